//! The browser harness itself, against a small plain-HTTP axum server: forms,
//! selects, multi-file uploads, Accept-Language, screenshots, cleanup.

use std::time::Instant;

use axum::extract::Multipart;
use axum::http::HeaderMap;
use axum::response::Html;
use axum::routing::get;
use axum::Router;
use skycast_tests::browser::{screenshot_dir, Browser};

const FORM: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Upload</title></head><body>
<h1>Upload</h1>
<form id="upload" method="post" action="/echo" enctype="multipart/form-data">
  <input id="title" name="title" type="text" value="to be cleared">
  <select id="kind" name="kind">
    <option value="music">Music</option>
    <option value="message">Message</option>
    <option value="jingle">Jingle</option>
  </select>
  <input id="files" name="files" type="file" multiple>
  <button type="submit">Send</button>
</form>
</body></html>"#;

async fn form() -> Html<&'static str> {
    Html(FORM)
}

/// Echoes the posted fields and, for files, their names and sizes.
async fn echo(mut multipart: Multipart) -> Html<String> {
    let mut lines = Vec::new();
    while let Some(field) = multipart.next_field().await.unwrap() {
        let name = field.name().unwrap_or_default().to_string();
        match field.file_name().map(str::to_string) {
            Some(file) => {
                let len = field.bytes().await.unwrap().len();
                lines.push(format!("{name}: {file} ({len} bytes)"));
            }
            None => {
                let text = field.text().await.unwrap();
                lines.push(format!("{name}={text}"));
            }
        }
    }
    Html(format!(
        "<!doctype html><html><body><h1>Received</h1><pre id=\"echo\">{}</pre></body></html>",
        escape(&lines.join("\n"))
    ))
}

async fn lang(headers: HeaderMap) -> Html<String> {
    let value = headers
        .get("accept-language")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).to_string())
        .unwrap_or_default();
    Html(format!(
        "<!doctype html><html><body><p id=\"accept-language\">{}</p></body></html>",
        escape(&value)
    ))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Serves the test pages on 127.0.0.1:0; returns the base URL.
async fn serve() -> url::Url {
    let app = Router::new()
        .route("/form", get(form))
        .route("/echo", axum::routing::post(echo))
        .route("/lang", get(lang));
    // Bound before spawning: the browser can connect as soon as this returns.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url::Url::parse(&format!("http://{addr}/")).unwrap()
}

#[tokio::test]
async fn browser_fills_a_form_uploads_files_and_saves_a_screenshot() {
    let base = serve().await;
    let files = tempfile::tempdir().unwrap();
    let notes = files.path().join("notes.txt");
    let jingle = files.path().join("two words.bin");
    std::fs::write(&notes, "hello, shop").unwrap();
    std::fs::write(&jingle, vec![7u8; 1000]).unwrap();

    let started = Instant::now();
    let browser = Browser::start("fr-FR").await;
    eprintln!("browser started in {:?}", started.elapsed());

    browser.goto(base.join("lang").unwrap().as_str()).await;
    let accept_language = browser.text("#accept-language").await;
    assert!(
        accept_language.starts_with("fr"),
        "Accept-Language: {accept_language:?}"
    );
    eprintln!("Accept-Language: {accept_language}");

    browser.goto(base.join("form").unwrap().as_str()).await;
    assert_eq!(browser.current_path().await, "/form");
    assert!(browser.exists("form#upload").await);
    assert!(!browser.exists("#echo").await);
    browser.fill("#title", "Summer sale").await;
    browser.select("#kind", "jingle").await;
    browser
        .set_files("#files", &[notes.as_path(), jingle.as_path()])
        .await;
    browser.submit_form("#upload").await;

    let echoed = browser.wait_for("#echo").await.text().await.unwrap();
    assert_eq!(
        echoed,
        "title=Summer sale\n\
         kind=jingle\n\
         files: notes.txt (11 bytes)\n\
         files: two words.bin (1000 bytes)"
    );
    assert_eq!(browser.current_path().await, "/echo");
    assert!(browser.page_source().await.contains("<h1>Received</h1>"));

    let shot = browser.screenshot("browser_harness-form_echo").await;
    assert_eq!(shot.parent(), Some(screenshot_dir().as_path()));
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        shot.display()
    );
    // The screenshot is the viewport: the 1280 px wide window minus its frame.
    let (width, height) = viewport(&browser).await;
    assert_eq!(width, 1280);
    assert_eq!(png_size(&png), (width, height));

    browser.set_window_size(400, 700).await;
    let narrow = browser.screenshot("browser_harness-narrow").await;
    assert_eq!(png_size(&std::fs::read(narrow).unwrap()).0, 400);

    browser.close().await;
    assert!(shot.exists(), "{} is gone after close", shot.display());
}

/// Width and height from the IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    let be = |b: &[u8]| u32::from_be_bytes(b.try_into().unwrap());
    (be(&png[16..20]), be(&png[20..24]))
}

/// The viewport's size in CSS pixels (device pixel ratio 1 in headless mode).
async fn viewport(browser: &Browser) -> (u32, u32) {
    let v = browser
        .client()
        .execute("return [window.innerWidth, window.innerHeight];", vec![])
        .await
        .unwrap();
    let n = |i: usize| v[i].as_u64().unwrap() as u32;
    (n(0), n(1))
}
