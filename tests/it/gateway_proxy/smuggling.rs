//! Request smuggling and oversized headers, written byte for byte over raw
//! TCP to the real server: nothing ambiguous ever reaches the upstream, and
//! the client gets a 4xx, not a 5xx.

use super::*;

/// What reaches the upstream for one raw request.
enum Upstream {
    /// Nothing.
    Nothing,
    /// Exactly one request: method and URI, its `Content-Length` header, its body.
    One(&'static str, &'static str, Option<&'static str>, &'static str),
}

struct Case {
    what: &'static str,
    raw: &'static str,
    status: u16,
    upstream: Upstream,
}

const CASES: &[Case] = &[
    Case {
        what: "Content-Length and Transfer-Encoding: chunked wins, the length is dropped, the rest is never read",
        raw: "POST /cl-te HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
              0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        status: 200,
        upstream: Upstream::One("POST", "/cl-te", None, ""),
    },
    Case {
        what: "the same, Transfer-Encoding first",
        raw: "POST /te-cl HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 30\r\n\r\n\
              3\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        status: 200,
        upstream: Upstream::One("POST", "/te-cl", None, "abc"),
    },
    Case {
        what: "two different Content-Lengths",
        raw: "POST /cl-cl HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc",
        status: 400,
        upstream: Upstream::Nothing,
    },
    Case {
        what: "a Content-Length list",
        raw: "POST /cl-list HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 40\r\n\r\nabc",
        status: 400,
        upstream: Upstream::Nothing,
    },
    Case {
        what: "two equal Content-Lengths are one",
        raw: "POST /cl-same HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        status: 200,
        upstream: Upstream::One("POST", "/cl-same", Some("3"), "abc"),
    },
    Case {
        what: "chunked not the last transfer coding",
        raw: "POST /te-order HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        status: 400,
        upstream: Upstream::Nothing,
    },
    Case {
        what: "an unknown transfer coding",
        raw: "POST /te-x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        status: 400,
        upstream: Upstream::Nothing,
    },
    Case {
        what: "a space before the colon",
        raw: "POST /te-space HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc",
        status: 400,
        upstream: Upstream::Nothing,
    },
    Case {
        what: "Transfer-Encoding in HTTP/1.0",
        raw: "POST /te-10 HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        status: 400,
        upstream: Upstream::Nothing,
    },
    Case {
        what: "an obsolete folded header line",
        raw: "GET /fold HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n",
        status: 400,
        upstream: Upstream::Nothing,
    },
    Case {
        what: "Connection naming Content-Length cannot strip the framing",
        raw: "POST /cl-hop HTTP/1.1\r\nHost: a\r\nConnection: close, Content-Length\r\nContent-Length: 3\r\n\r\nabc",
        status: 200,
        upstream: Upstream::One("POST", "/cl-hop", Some("3"), "abc"),
    },
    Case {
        what: "an absolute-form target goes to our upstream, with its path only",
        raw: "GET http://evil.example/abs?q=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        status: 200,
        upstream: Upstream::One("GET", "/abs?q=1", None, ""),
    },
];

#[tokio::test]
async fn smuggling_attempts_are_never_forwarded_ambiguously() {
    let echo = Echo::start().await;
    let gate = gate(settings(&echo.url()), Some(alice())).await;
    for case in CASES {
        let before = echo.requests().len();
        let answer = raw_exchange(gate, case.raw.as_bytes()).await;
        assert_eq!(status_of(&answer), case.status, "{}: {answer}", case.what);
        assert_eq!(
            answer.matches("HTTP/1.1 ").count(),
            1,
            "{}: one answer: {answer}",
            case.what
        );
        let seen = &echo.requests()[before..];
        match case.upstream {
            Upstream::Nothing => assert!(seen.is_empty(), "{}: forwarded {seen:?}", case.what),
            Upstream::One(method, uri, length, body) => {
                assert_eq!(seen.len(), 1, "{}: {seen:?}", case.what);
                let seen = &seen[0];
                assert_eq!(
                    (seen.method.as_str(), seen.uri.as_str()),
                    (method, uri),
                    "{}",
                    case.what
                );
                assert_eq!(seen.header("content-length").as_deref(), length, "{}", case.what);
                assert_eq!(seen.body, body, "{}", case.what);
                assert_eq!(
                    seen.header("x-forwarded-user").as_deref(),
                    Some("alice-sub"),
                    "{}",
                    case.what
                );
            }
        }
    }
}

/// A chunked body that turns out malformed half-way: the client gets a 400,
/// and the upstream never gets a complete request out of it.
#[tokio::test]
async fn a_malformed_chunked_body_is_a_400() {
    let echo = Echo::start().await;
    let gate = gate(settings(&echo.url()), Some(alice())).await;
    let raw = "POST /bad-chunk HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n";
    let answer = raw_exchange(gate, raw.as_bytes()).await;
    assert_eq!(status_of(&answer), 400, "{answer}");
    assert!(
        echo.requests().iter().all(|s| s.body != "abc" || s.uri != "/bad-chunk"),
        "a truncated body passed as whole"
    );
}

/// Request headers beyond hyper's limits: a 4xx from our server, never a 5xx.
#[tokio::test]
async fn oversized_request_headers_are_refused() {
    let echo = Echo::start().await;
    let gate = gate(settings(&echo.url()), Some(alice())).await;

    let huge = format!(
        "GET /huge HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "a".repeat(512 * 1024)
    );
    let answer = raw_exchange(gate, huge.as_bytes()).await;
    assert_eq!(status_of(&answer), 431, "{}", &answer[..answer.len().min(200)]);

    let many: String = (0..200).map(|i| format!("X-H{i}: {i}\r\n")).collect();
    let answer = raw_exchange(gate, format!("GET /many HTTP/1.1\r\nHost: a\r\n{many}\r\n").as_bytes()).await;
    assert_eq!(status_of(&answer), 431, "{answer}");
    assert!(echo.requests().is_empty());
}
