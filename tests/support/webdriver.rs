//! A real browser for the dashboard tests: Debian's headless Chromium driven by its
//! chromedriver over the W3C WebDriver protocol (JSON over HTTP on loopback). Only the
//! handful of commands the tests use: open a page, find elements, type, click, read text,
//! cookies, window size, screenshots.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use pubky_edge::runtime::http1::{call, Call};
use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.send("DELETE", &format!("/session/{}", self.session), None);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Whether chromedriver and Chromium are here (required under `.ci/run`).
pub fn available() -> bool {
    super::installed("chromedriver", "--version") && super::installed("chromium", "--version")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium window `width` × `height`.
    pub fn start(width: u32, height: u32) -> Browser {
        let port = super::proc::free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--hide-scrollbars", "--force-device-scale-factor=1",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}});
        let mut b = Browser {
            driver,
            addr,
            session: String::new(),
            _profile: profile,
        };
        let v = b
            .send("POST", "/session", Some(caps))
            .expect("a browser session");
        b.session = v["sessionId"].as_str().expect("sessionId").to_string();
        b
    }

    fn send(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let headers = [("content-type", "application/json")];
        let c = Call {
            method,
            path,
            headers: &headers,
            body: body.as_bytes(),
        };
        let host = self.addr.to_string();
        let reply =
            call(self.addr, &host, &c, Duration::from_secs(60)).map_err(|e| e.to_string())?;
        let status = reply.status;
        let bytes = reply.read_all().map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        if status >= 300 {
            return Err(format!("{method} {path}: {status} {}", v["value"]));
        }
        Ok(v.get("value").cloned().unwrap_or(v))
    }

    fn cmd(&self, method: &str, what: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{what}", self.session);
        self.send(method, &path, body)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    fn find(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        match v[ELEMENT].as_str() {
            Some(id) => id.to_string(),
            None => panic!("no element {css}: {v} on {}", self.url()),
        }
    }

    pub fn count(&self, css: &str) -> usize {
        let v = self.cmd(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_array().map_or(0, Vec::len)
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.cmd("POST", &format!("/element/{id}/clear"), Some(json!({})));
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Clicks what submits a form or follows a link, and waits for the next page.
    pub fn click(&self, css: &str) {
        let id = self.find(css);
        self.script("window.__before_click = true");
        self.cmd("POST", &format!("/element/{id}/click"), Some(json!({})));
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let done = self
                .send(
                    "POST",
                    &format!("/session/{}/execute/sync", self.session),
                    Some(json!({"script": "return !window.__before_click && document.readyState === 'complete'", "args": []})),
                )
                .ok()
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            if done {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no new page after clicking {css}"
            );
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    pub fn text(&self, css: &str) -> String {
        let id = self.find(css);
        self.cmd("GET", &format!("/element/{id}/text"), None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// The page's visible text.
    pub fn body(&self) -> String {
        self.text("body")
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        let v = self
            .send(
                "GET",
                &format!("/session/{}/cookie/{name}", self.session),
                None,
            )
            .ok()?;
        v["value"].as_str().map(str::to_string)
    }

    pub fn delete_cookies(&self) {
        self.cmd("DELETE", "/cookie", None);
    }

    pub fn script(&self, js: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": js, "args": []})),
        )
    }

    pub fn set_size(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    /// A screenshot of the whole page at `width` (the window grows to the page's height).
    pub fn screenshot(&self, width: u32, path: &Path) {
        self.set_size(width, 800);
        let h = self
            .script("return document.documentElement.scrollHeight")
            .as_u64()
            .unwrap_or(800);
        self.set_size(width, (h as u32 + 140).min(6000));
        let png = self.cmd("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64 png"))
            .unwrap();
        std::fs::write(path, png).unwrap();
    }
}
