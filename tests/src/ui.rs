//! A signed-in browser for the web UI tests: [`Ui`] opens pages through the
//! real login form, checks each page's status and server time (Navigation
//! Timing), fills and submits forms, and takes desktop and phone screenshots.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fantoccini::Locator;
use serde_json::{json, Value};

use crate::browser::Browser;
use crate::PublisherFixture;

/// Server time a page may take here. The goal is 200 ms on the demo data; tests
/// run a debug build next to other tests and Chromium, so this only catches
/// pages that are slow by an order of magnitude. The figures are printed.
pub const PAGE_BUDGET_MS: f64 = 1000.0;
/// How long a form submission may take to show the next page.
pub const NAVIGATION_TIMEOUT: Duration = Duration::from_secs(15);

/// One page load as the browser's Navigation Timing saw it.
pub struct Timing {
    pub page: String,
    /// `responseEnd - requestStart` of the page itself (after any redirect).
    pub server_ms: f64,
    /// The POST answered by a redirect before it (0 when none).
    pub redirect_ms: f64,
    pub status: u64,
    /// `h2` or `http/1.1`.
    pub protocol: String,
}

/// A browser signed in (or not) to the fixture's publisher, recording the
/// timing of every page it opens.
pub struct Ui {
    pub b: Browser,
    pub base: String,
    pub role: &'static str,
    pub timings: Vec<Timing>,
}

impl Ui {
    pub async fn start(fx: &PublisherFixture, lang: &str, role: &'static str) -> Ui {
        Ui {
            b: Browser::start(lang).await,
            base: fx.url(),
            role,
            timings: Vec::new(),
        }
    }

    /// Opens `path` and checks it answered 200.
    pub async fn open(&mut self, path: &str) {
        self.open_expecting(path, 200).await;
    }

    pub async fn open_expecting(&mut self, path: &str, status: u64) {
        self.b.goto(&format!("{}{path}", self.base)).await;
        self.record(status).await;
    }

    /// Notes the current page's timing and checks its status and time.
    pub async fn record(&mut self, status: u64) {
        let v = self
            .b
            .client()
            .execute(
                "const n = performance.getEntriesByType('navigation')[0];
                 return [location.pathname + location.search, n.responseEnd - n.requestStart,
                         n.redirectEnd - n.redirectStart, n.responseStatus, n.nextHopProtocol];",
                vec![],
            )
            .await
            .expect("navigation timing");
        let t = Timing {
            page: v[0].as_str().unwrap_or_default().to_string(),
            server_ms: v[1].as_f64().unwrap_or(f64::NAN),
            redirect_ms: v[2].as_f64().unwrap_or(0.0),
            status: v[3].as_u64().unwrap_or(0),
            protocol: v[4].as_str().unwrap_or_default().to_string(),
        };
        assert_eq!(
            t.status,
            status,
            "{} answered {} over {} (expected {status}): {}",
            t.page,
            t.status,
            t.protocol,
            self.main_text().await
        );
        assert!(
            t.server_ms < PAGE_BUDGET_MS,
            "{} took {:.0} ms in the server (budget {PAGE_BUDGET_MS} ms in a debug build)",
            t.page,
            t.server_ms
        );
        self.timings.push(t);
    }

    /// Clicks `button_css` (a submit button) and waits for the page it leads to.
    pub async fn submit(&mut self, button_css: &str) {
        self.mark_page().await;
        self.b.click(button_css).await;
        self.wait_new_page().await;
        self.record(200).await;
    }

    /// Clicks a `data-confirm` button, accepts the browser's confirm dialog and
    /// waits for the page the form leads to.
    pub async fn submit_confirmed(&mut self, button_css: &str) {
        self.mark_page().await;
        self.b.click(button_css).await;
        // Nothing else may talk to the page while the dialog is open: chromedriver
        // would dismiss it. It may take a moment to open after the click.
        let started = Instant::now();
        loop {
            match self.b.client().accept_alert().await {
                Ok(()) => break,
                Err(e) if started.elapsed() < Duration::from_secs(5) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                Err(e) => panic!("no confirm dialog after clicking `{button_css}`: {e}"),
            }
        }
        self.wait_new_page().await;
        self.record(200).await;
    }

    /// Marks the current document, so that [`Ui::wait_new_page`] can tell when
    /// another one replaced it.
    pub async fn mark_page(&self) {
        self.b
            .client()
            .execute("window.__skycastOld = true; return null;", vec![])
            .await
            .expect("mark the page");
    }

    pub async fn wait_new_page(&self) {
        let started = Instant::now();
        loop {
            // Errors are expected while the old page unloads: try again.
            let state = self
                .b
                .client()
                .execute(
                    "return window.__skycastOld === true ? 'old' : document.readyState;",
                    vec![],
                )
                .await;
            if matches!(&state, Ok(Value::String(s)) if s == "complete") {
                return;
            }
            assert!(
                started.elapsed() < NAVIGATION_TIMEOUT,
                "no new page within {NAVIGATION_TIMEOUT:?} (still on {}): {state:?}",
                self.b.current_path().await
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Signs in through the login form; returns the path it lands on.
    pub async fn login(&mut self, user: &str, password: &str) -> String {
        self.open("/login").await;
        self.b.fill("#login-form input[name=username]", user).await;
        self.b.fill("#login-form input[name=password]", password).await;
        self.submit("#login-form button[type=submit]").await;
        self.b.current_path().await
    }

    /// Signs out with the header's button.
    pub async fn logout(&mut self) {
        self.submit("header form[action='/logout'] button[type=submit]")
            .await;
        assert_eq!(self.b.current_path().await, "/login");
    }

    /// Sets an input's value from script: `<input type=date|time>` take typed
    /// keys in the order of the browser's locale (mm/dd/yyyy in en-US), which a
    /// test should not depend on.
    pub async fn set_value(&self, css: &str, value: &str) {
        let done = self
            .b
            .client()
            .execute(
                "const e = document.querySelector(arguments[0]);
                 if (!e) return false;
                 e.value = arguments[1];
                 e.dispatchEvent(new Event('input', {bubbles: true}));
                 e.dispatchEvent(new Event('change', {bubbles: true}));
                 return e.value === arguments[1];",
                vec![json!(css), json!(value)],
            )
            .await
            .unwrap_or_else(|e| panic!("set `{css}` to {value:?}: {e}"));
        assert_eq!(done, json!(true), "`{css}` did not take the value {value:?}");
    }

    /// Scrolls so that `css` is in the middle of the viewport (for screenshots).
    pub async fn scroll_to(&self, css: &str) {
        self.b
            .client()
            .execute(
                "document.querySelector(arguments[0]).scrollIntoView({block: 'center'}); return null;",
                vec![json!(css)],
            )
            .await
            .unwrap_or_else(|e| panic!("scroll to `{css}`: {e}"));
    }

    /// Ticks a checkbox or radio (clicks it unless it is already checked).
    pub async fn check(&self, css: &str) {
        let el = self.find(css).await;
        if !el.is_selected().await.unwrap_or(false) {
            el.click().await.unwrap_or_else(|e| panic!("click `{css}`: {e}"));
        }
    }

    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self.b.client().find(Locator::Css(css)).await {
            Ok(el) => el,
            Err(e) => panic!("find `{css}` on {}: {e}", self.b.current_path().await),
        }
    }

    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.find(css)
            .await
            .attr(name)
            .await
            .unwrap_or_else(|e| panic!("attribute {name} of `{css}`: {e}"))
    }

    /// Every element matching `css`.
    async fn all(&self, css: &str) -> Vec<fantoccini::elements::Element> {
        self.b
            .client()
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find `{css}`: {e}"))
    }

    /// The rendered texts of every element matching `css`.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let mut out = Vec::new();
        for el in self.all(css).await {
            out.push(el.text().await.unwrap_or_default());
        }
        out
    }

    /// An attribute of every element matching `css`.
    pub async fn attrs(&self, css: &str, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        for el in self.all(css).await {
            out.push(el.attr(name).await.unwrap_or_default().unwrap_or_default());
        }
        out
    }

    /// The page's `<main>`, for failure messages.
    pub async fn main_text(&self) -> String {
        match self.b.client().find(Locator::Css("main")).await {
            Ok(el) => el.text().await.unwrap_or_default(),
            Err(_) => self.b.page_source().await.chars().take(2000).collect(),
        }
    }

    /// The flash message of the page, if any, with its kind (`ok`, `warn`, `error`).
    pub async fn flash(&self) -> Option<(String, String)> {
        let el = self.b.client().find(Locator::Css("main > p.flash")).await.ok()?;
        let class = el.attr("class").await.ok().flatten().unwrap_or_default();
        let kind = class
            .split_whitespace()
            .find(|c| *c != "flash")
            .unwrap_or("")
            .to_string();
        Some((kind, el.text().await.unwrap_or_default()))
    }

    /// Asserts the page shows an `ok` flash and returns its text.
    pub async fn ok_flash(&self) -> String {
        match self.flash().await {
            Some((kind, text)) if kind == "ok" => text,
            other => panic!(
                "expected an ok message on {}, got {other:?}: {}",
                self.b.current_path().await,
                self.main_text().await
            ),
        }
    }

    /// Saves a screenshot of the viewport and checks the PNG is there.
    pub async fn shot(&self, name: &str) -> PathBuf {
        let path = self.b.screenshot(name).await;
        let png = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{} is not a PNG",
            path.display()
        );
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// The current page at desktop width (`<role>-home`) and phone size
    /// (`<role>-home-phone`, 390x844), then back to the desktop window.
    pub async fn home_shots(&self) -> Vec<PathBuf> {
        let desktop = self.shot(&format!("{}-home", self.role)).await;
        self.b.set_window_size(390, 844).await;
        let width = self
            .b
            .client()
            .execute("return window.innerWidth;", vec![])
            .await
            .unwrap();
        assert_eq!(width, json!(390), "phone-sized viewport");
        // The page must fit: nothing wider than the phone's screen.
        let scroll = self
            .b
            .client()
            .execute("return document.documentElement.scrollWidth;", vec![])
            .await
            .unwrap();
        let phone = self.shot(&format!("{}-home-phone", self.role)).await;
        assert!(
            scroll.as_u64().unwrap_or(0) <= 390,
            "{}'s page is {scroll} px wide on a 390 px phone",
            self.role
        );
        self.b.set_window_size(1280, 900).await;
        vec![desktop, phone]
    }

    /// Runs `fetch(...)` from the page (with the session's cookie) and returns
    /// the HTTP status. `body_js` is a JS expression for the request body; the
    /// variable `token` holds the page's CSRF token.
    pub async fn fetch_status(&self, method: &str, path: &str, body_js: &str) -> u64 {
        let script = format!(
            "const token = document.querySelector('input[name=csrf]').value;
             return fetch(arguments[0], {{method: arguments[1], headers: {{'x-csrf-token': token}},
                                          body: {body_js}, redirect: 'manual'}})
               .then(r => r.status);"
        );
        let v = self
            .b
            .client()
            .execute(&script, vec![json!(path), json!(method)])
            .await
            .unwrap_or_else(|e| panic!("fetch {method} {path}: {e}"));
        v.as_u64()
            .unwrap_or_else(|| panic!("fetch {method} {path}: status {v}"))
    }

    /// Prints the page timings (visible with `--no-capture`).
    pub fn print_timings(&self) {
        eprintln!(
            "page timings ({}; server = responseEnd - requestStart):",
            self.role
        );
        for t in &self.timings {
            let redirect = if t.redirect_ms > 0.0 {
                format!(" (after a {:.1} ms redirecting POST)", t.redirect_ms)
            } else {
                String::new()
            };
            eprintln!(
                "  {:>7.1} ms  {} {:8}  {}{redirect}",
                t.server_ms, t.status, t.protocol, t.page
            );
        }
        let max = self.timings.iter().map(|t| t.server_ms).fold(0.0, f64::max);
        eprintln!("  slowest: {max:.1} ms over {} pages", self.timings.len());
    }

    pub async fn close(self) {
        self.print_timings();
        self.b.close().await;
    }
}
