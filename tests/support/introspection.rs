//! The RFC 7662 introspection endpoint of the XOAUTH2 tests, as a child
//! process: tests/integration/fakes/introspection.py, serving the tokens
//! given, reporting every call it gets (token, whether it said active).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};

pub struct Introspection {
    child: Child,
    /// Closing it stops the fake.
    _stdin: ChildStdin,
    pub port: u16,
    calls: Arc<Mutex<Vec<(String, bool)>>>,
}

impl Introspection {
    /// Serves `tokens` as active access tokens of their user.
    pub fn start(tokens: &[(&str, &str)]) -> Introspection {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/fakes/introspection.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script);
        for (user, token) in tokens {
            cmd.arg("--token").arg(format!("{user}={token}"));
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting python3 introspection.py");
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines
            .next()
            .expect("introspection.py printed nothing")
            .unwrap();
        let port = first
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("introspection.py said {first:?}"));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = calls.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut words = line.split(' ');
                if let (Some("CALL"), Some(token), Some(active)) =
                    (words.next(), words.next(), words.next())
                {
                    seen.lock()
                        .unwrap()
                        .push((token.to_string(), active == "true"));
                }
            }
        });
        Introspection {
            child,
            _stdin: stdin,
            port,
            calls,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/introspect", self.port)
    }

    /// Every call so far: (token, answered active).
    pub fn calls(&self) -> Vec<(String, bool)> {
        self.calls.lock().unwrap().clone()
    }

    /// The calls, once there are at least `n` (the fake reports a call
    /// just before it answers; the report may trail the login a little).
    pub fn wait_calls(&self, n: usize) -> Vec<(String, bool)> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let calls = self.calls();
            if calls.len() >= n || std::time::Instant::now() > deadline {
                return calls;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Introspection {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
