//! What reaches the log: strings from a client or a provider are escaped,
//! so that a line break in them cannot start a forged log line.

use std::io;
use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use tracing_subscriber::fmt::MakeWriter;

use crate::support::*;

/// A log written to memory.
#[derive(Clone, Default)]
pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// The provider's `error=` on the callback carries CR/LF and a fake log
/// line: it is logged, escaped, on the line of its own event.
#[tokio::test]
async fn a_line_break_from_the_callback_cannot_start_a_log_line() {
    let log = Captured::default();
    // This test's thread only: the app runs on this current-thread runtime.
    let subscriber = tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = TestApp::spawn().await;
    let browser = Browser::new();
    let state = query_param(&start_login(&app, &browser, None).await, "state");
    let forged = "access_denied\r\n2026-01-01T00:00:00Z  INFO login user.id=1 FORGED";
    let r = browser
        .get(&app.url(&format!(
            "/callback?state={}&error={}",
            urlencoding(&state),
            urlencoding(forged)
        )))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let text = log.text();
    let line = text
        .lines()
        .find(|l| l.contains("FORGED"))
        .unwrap_or_else(|| panic!("the refusal is logged:\n{text}"));
    assert!(line.contains("provider_error"), "one line, with its event: {line}");
    assert!(line.contains(r"access_denied\r\n2026"), "escaped: {line}");
    assert_eq!(
        text.lines().filter(|l| l.contains("FORGED")).count(),
        1,
        "no line of its own:\n{text}"
    );
}
