//! Reverse proxy mode (`UPSTREAM_URL`): what reaches the upstream, and
//! what anonymous and refused clients get instead.
