//! An HTTP client for web UI tests below the browser: signs in like a browser
//! (cookies, CSRF token taken from the page), posts forms and uploads, and
//! reads back status, final path and page text.

use reqwest::multipart::{Form, Part};
use reqwest::{Client, StatusCode};

use crate::PublisherFixture;

/// What a request ended with, after redirects.
#[derive(Debug, Clone)]
pub struct Page {
    pub status: StatusCode,
    /// The path of the final URL (after redirects).
    pub path: String,
    pub body: String,
}

impl Page {
    /// The text of the first `.flash` message, if the page shows one.
    pub fn flash(&self) -> Option<String> {
        let start = self.body.find("class=\"flash")?;
        let rest = &self.body[start..];
        let open = rest.find('>')? + 1;
        let close = rest.find("</p>")?;
        Some(rest[open..close].trim().to_string())
    }
}

/// One signed-in (or not) browser-like client.
pub struct WebClient {
    pub base: String,
    client: Client,
    /// The CSRF token of the current session, taken from the last page that had one.
    pub csrf: Option<String>,
}

/// Users every web test gets besides `admin` (`admin-password`): name = role.
pub const TEST_PASSWORD: &str = "test-password-1";

impl PublisherFixture {
    /// Adds one user of each role (`marketing`, `commercial`, `auditor`, password
    /// [`TEST_PASSWORD`]) through the database, as an admin would.
    pub fn add_role_users(&self) {
        let db = self.data.db().unwrap();
        for role in ["marketing", "commercial", "auditor"] {
            let r = skycast_publisher::db::Role::parse(role).unwrap();
            db.create_user(role, TEST_PASSWORD, r).unwrap();
        }
    }

    pub fn web_client(&self) -> WebClient {
        WebClient::new(&self.url(), &self.data.ca_cert_path())
    }
}

impl WebClient {
    pub fn new(base: &str, ca_cert: &std::path::Path) -> WebClient {
        Self::with(base, ca_cert, Client::builder())
    }

    /// The same over HTTP/1.1 only: for benchmarks timing the server's pages,
    /// where the client's HTTP/2 framing of a 5 MB body on the same 2 cores
    /// would be counted against the server.
    pub fn http1(base: &str, ca_cert: &std::path::Path) -> WebClient {
        Self::with(base, ca_cert, Client::builder().http1_only())
    }

    fn with(base: &str, ca_cert: &std::path::Path, builder: reqwest::ClientBuilder) -> WebClient {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(ca_cert).unwrap()).unwrap();
        let client = builder
            .add_root_certificate(ca)
            .tls_built_in_root_certs(false)
            .cookie_store(true)
            .build()
            .unwrap();
        WebClient {
            base: base.trim_end_matches('/').to_string(),
            client,
            csrf: None,
        }
    }

    async fn page(&mut self, resp: reqwest::Response) -> Page {
        let status = resp.status();
        let path = resp.url().path().to_string();
        let body = resp.text().await.unwrap();
        if let Some(token) = csrf_in(&body) {
            self.csrf = Some(token);
        }
        Page { status, path, body }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .header("accept-language", "en")
            .send()
            .await
            .unwrap();
        self.page(resp).await
    }

    /// Raw bytes of a GET (media, .m3u, bundles) with the status.
    pub async fn get_bytes(&self, path: &str) -> (StatusCode, Vec<u8>) {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (resp.status(), resp.bytes().await.unwrap().to_vec())
    }

    /// Posts a urlencoded form, adding the session's CSRF token.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let token = self.csrf.clone().unwrap_or_default();
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        all.push(("csrf", &token));
        self.post_raw(path, &all).await
    }

    /// Posts exactly `fields`, with no CSRF token added.
    pub async fn post_raw(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .header("accept-language", "en")
            .form(fields)
            .send()
            .await
            .unwrap();
        self.page(resp).await
    }

    /// Uploads files as `multipart/form-data` field `field` (the CSRF token in the
    /// query string, as the upload forms do), plus extra text fields.
    pub async fn upload(
        &mut self,
        path: &str,
        field: &str,
        files: &[(&str, Vec<u8>)],
        fields: &[(&str, &str)],
    ) -> Page {
        let mut form = Form::new();
        for (k, v) in fields {
            form = form.text(k.to_string(), v.to_string());
        }
        for (name, bytes) in files {
            let part = Part::bytes(bytes.clone())
                .file_name(name.to_string())
                .mime_str("audio/mpeg")
                .unwrap();
            form = form.part(field.to_string(), part);
        }
        let token = self.csrf.clone().unwrap_or_default();
        let sep = if path.contains('?') { '&' } else { '?' };
        let resp = self
            .client
            .post(format!("{}{path}{sep}csrf={token}", self.base))
            .header("accept-language", "en")
            .multipart(form)
            .send()
            .await
            .unwrap();
        self.page(resp).await
    }

    /// Signs in through the login form; returns the page it lands on.
    pub async fn login(&mut self, user: &str, password: &str) -> Page {
        self.get("/login").await;
        self.post("/login", &[("username", user), ("password", password)])
            .await
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// The value of the first `name="csrf"` hidden input, or of a `csrf=` in a form action.
pub fn csrf_in(body: &str) -> Option<String> {
    let at = body.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    let end = body[at..].find('"')?;
    Some(body[at..at + end].to_string())
}
