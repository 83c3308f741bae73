//! A private Dovecot (IMAP + POP3) on loopback for tests against a real
//! upstream server: its own config, ports, TLS certificate signed by its own
//! CA (so clients verify it through an extra CA file), one user, and doveadm
//! to put mail in and read flags back. The config comes from
//! `dovecot.conf.in` next to this file, which tests/integration/dovecot.py
//! fills the same way.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USER: &str = "alice";
pub const PASSWORD: &str = "s3cret-Pass";

/// Hierarchy separator of the mail namespace.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Separator {
    /// Maildir++ layout: `INBOX.support`.
    Dot,
    /// LAYOUT=fs: `INBOX/support`.
    Slash,
}

pub struct Dovecot {
    pub dir: tempfile::TempDir,
    child: Child,
    pub imap_port: u16,
    pub imaps_port: u16,
    pub pop3_port: u16,
    pub pop3s_port: u16,
    /// PEM of the CA that signed the server certificate.
    pub ca_file: PathBuf,
    conf: PathBuf,
    pub separator: char,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn dovecot_binary() -> &'static str {
    for candidate in ["/usr/sbin/dovecot", "/usr/local/sbin/dovecot"] {
        if Path::new(candidate).exists() {
            return candidate;
        }
    }
    panic!(
        "dovecot is not installed: run ./scripts/test.sh (it installs dovecot-imapd and dovecot-pop3d)"
    );
}

impl Dovecot {
    pub fn start() -> Dovecot {
        Dovecot::start_with(Separator::Dot)
    }

    pub fn start_with(separator: Separator) -> Dovecot {
        Dovecot::start_configured(separator, "")
    }

    /// An IMAP server announcing only `capabilities` after login (e.g.
    /// without MOVE and UIDPLUS, like Courier and older servers): the
    /// commands still work, clients just must not use them.
    pub fn start_announcing(capabilities: &str) -> Dovecot {
        Dovecot::start_configured(
            Separator::Dot,
            &format!("protocol imap {{\n  imap_capability = {capabilities}\n}}\n"),
        )
    }

    /// A server that also takes OAuth2 logins (XOAUTH2, OAUTHBEARER) for
    /// its user, each token checked by Dovecot's oauth2 passdb at the RFC
    /// 7662 endpoint `introspection_url` (dovecot-oauth2.conf.in).
    pub fn start_oauth2(introspection_url: &str) -> Dovecot {
        Dovecot::start_full(Separator::Dot, "", Some(introspection_url))
    }

    /// [`Dovecot::start_oauth2`] announcing only `capabilities` (plus the
    /// AUTH= and STARTTLS ones Dovecot adds itself) before login.
    pub fn start_oauth2_announcing(introspection_url: &str, capabilities: &str) -> Dovecot {
        Dovecot::start_full(
            Separator::Dot,
            &format!("protocol imap {{\n  imap_capability = {capabilities}\n}}\n"),
            Some(introspection_url),
        )
    }

    /// The greeting line of the plain IMAP port.
    pub fn greeting(&self) -> String {
        use std::io::BufRead;
        let stream = std::net::TcpStream::connect(("127.0.0.1", self.imap_port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(stream)
            .read_line(&mut line)
            .unwrap();
        line
    }

    fn start_configured(separator: Separator, extra: &str) -> Dovecot {
        Dovecot::start_full(separator, extra, None)
    }

    /// A free port can be taken by another process between our probe and
    /// Dovecot's bind (the suite runs many servers at once): a start that
    /// does not come up is tried again with new ports.
    fn start_full(separator: Separator, extra: &str, introspection_url: Option<&str>) -> Dovecot {
        let mut attempt = 1;
        loop {
            match Dovecot::try_start(separator, extra, introspection_url) {
                Ok(dovecot) => return dovecot,
                Err(why) if attempt < 3 => {
                    eprintln!("dovecot start attempt {attempt} failed ({why}); retrying");
                    attempt += 1;
                }
                Err(why) => panic!("{why}"),
            }
        }
    }

    fn try_start(
        separator: Separator,
        extra: &str,
        introspection_url: Option<&str>,
    ) -> Result<Dovecot, String> {
        let binary = dovecot_binary();
        let dir = tempfile::Builder::new()
            .prefix("mailgate-dovecot")
            .tempdir()
            .unwrap();
        let root = dir.path();
        // Dovecot's mail processes run as nobody: they must reach the homes.
        set_mode(root, 0o755);
        let (ca_pem, cert_pem, key_pem) = certificates();
        std::fs::write(root.join("ca.pem"), ca_pem).unwrap();
        std::fs::write(root.join("cert.pem"), cert_pem).unwrap();
        std::fs::write(root.join("key.pem"), key_pem).unwrap();
        std::fs::write(root.join("passwd"), format!("{USER}:{{PLAIN}}{PASSWORD}\n")).unwrap();
        let home = root.join("home").join(USER);
        std::fs::create_dir_all(&home).unwrap();
        chown_nobody(&root.join("home"));
        chown_nobody(&home);
        let (ports, layout, sep) = (
            [free_port(), free_port(), free_port(), free_port()],
            if separator == Separator::Slash {
                ":LAYOUT=fs"
            } else {
                ""
            },
            if separator == Separator::Slash {
                '/'
            } else {
                '.'
            },
        );
        let conf = render_config(&[
            ("ROOT", root.display().to_string()),
            ("LAYOUT", layout.to_string()),
            ("SEPARATOR", sep.to_string()),
            ("IMAP_PORT", ports[0].to_string()),
            ("IMAPS_PORT", ports[1].to_string()),
            ("POP3_PORT", ports[2].to_string()),
            ("POP3S_PORT", ports[3].to_string()),
        ]) + extra;
        let conf = match introspection_url {
            None => conf,
            Some(url) => {
                let values = [
                    ("ROOT", root.display().to_string()),
                    ("INTROSPECTION_URL", url.to_string()),
                ];
                std::fs::write(
                    root.join("dovecot-oauth2.conf.ext"),
                    render(OAUTH2_EXT, "dovecot-oauth2.conf.ext.in", &values[1..]),
                )
                .unwrap();
                conf + &render(OAUTH2_BLOCK, "dovecot-oauth2.conf.in", &values[..1])
            }
        };
        let conf_path = root.join("dovecot.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(binary)
            .arg("-F")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(root.join("dovecot.stderr"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .spawn()
            .expect("starting dovecot");
        let dovecot = Dovecot {
            child,
            imap_port: ports[0],
            imaps_port: ports[1],
            pop3_port: ports[2],
            pop3s_port: ports[3],
            ca_file: root.join("ca.pem"),
            conf: conf_path,
            separator: sep,
            dir,
        };
        let mut dovecot = dovecot;
        dovecot.wait_ready()?;
        // Make the INBOX exist, so that an empty mailbox is a valid state.
        dovecot.doveadm(&["mailbox", "status", "-u", USER, "messages", "INBOX"]);
        Ok(dovecot)
    }

    /// Waits until every listener answers; Err (with the logs) when
    /// Dovecot exited or did not listen within 20 s.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in [
            self.imap_port,
            self.imaps_port,
            self.pop3_port,
            self.pop3s_port,
        ] {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                let exited = matches!(self.child.try_wait(), Ok(Some(_)));
                if exited || Instant::now() > deadline {
                    let stderr = std::fs::read_to_string(self.dir.path().join("dovecot.stderr"))
                        .unwrap_or_default();
                    return Err(format!(
                        "dovecot did not listen on {port} (exited: {exited}); log:\n{}\nstderr:\n{stderr}",
                        self.log()
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// Runs doveadm against this instance; panics with its output on failure.
    pub fn doveadm(&self, args: &[&str]) -> String {
        self.doveadm_input(args, None)
    }

    fn doveadm_input(&self, args: &[&str], input: Option<&[u8]>) -> String {
        use std::io::Write;
        let mut child = Command::new("doveadm")
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running doveadm");
        if let Some(bytes) = input {
            child.stdin.take().unwrap().write_all(bytes).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "doveadm {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Creates a folder (name with this instance's separator).
    pub fn create_folder(&self, name: &str) {
        self.doveadm(&["mailbox", "create", "-u", USER, name]);
    }

    /// Delivers a message into a folder, unread.
    pub fn save(&self, folder: &str, raw: &[u8]) {
        self.doveadm_input(&["save", "-u", USER, "-m", folder], Some(raw));
    }

    /// (uid, flags without \\Recent) of every message in a folder, by uid.
    pub fn flags(&self, folder: &str) -> Vec<(u32, String)> {
        let out = self.doveadm(&[
            "-f",
            "tab",
            "fetch",
            "-u",
            USER,
            "uid flags",
            "mailbox",
            folder,
            "all",
        ]);
        let mut rows: Vec<(u32, String)> = out
            .lines()
            .skip(1)
            .filter_map(|line| {
                let (uid, flags) = line.split_once('\t')?;
                // \Recent depends on which session saw the message first: not a fact about it.
                let flags: Vec<&str> = flags
                    .split_whitespace()
                    .filter(|f| *f != "\\Recent")
                    .collect();
                Some((uid.trim().parse().ok()?, flags.join(" ")))
            })
            .collect();
        rows.sort();
        rows
    }

    /// Number of messages in a folder.
    pub fn count(&self, folder: &str) -> usize {
        self.flags(folder).len()
    }

    /// Sets flags on a message (e.g. "\\Seen").
    pub fn add_flags(&self, folder: &str, uid: u32, flags: &str) {
        self.doveadm(&[
            "flags",
            "add",
            "-u",
            USER,
            flags,
            "mailbox",
            folder,
            "uid",
            &uid.to_string(),
        ]);
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The config template shared with tests/integration/dovecot.py.
const TEMPLATE: &str = include_str!("dovecot.conf.in");

/// The optional OAuth2 block and its passdb settings (shared with
/// tests/integration/dovecot.py too).
const OAUTH2_BLOCK: &str = include_str!("dovecot-oauth2.conf.in");
const OAUTH2_EXT: &str = include_str!("dovecot-oauth2.conf.ext.in");

/// Fills every `@NAME@` of the template; panics when a name is not in it or
/// a placeholder is left over, so the template and this harness cannot drift.
fn render_config(values: &[(&str, String)]) -> String {
    render(TEMPLATE, "dovecot.conf.in", values)
}

fn render(template: &str, file: &str, values: &[(&str, String)]) -> String {
    let mut conf = template.to_string();
    for (name, value) in values {
        let key = format!("@{name}@");
        assert!(
            conf.contains(&key),
            "tests/support/{file} has no placeholder {key}"
        );
        conf = conf.replace(&key, value);
    }
    let left = placeholders(&conf);
    assert!(
        left.is_empty(),
        "tests/support/{file}: placeholders left unfilled: {left:?}"
    );
    conf
}

/// The `NAME`s of the `@NAME@` placeholders (upper case and `_`) in a text.
fn placeholders(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('@') {
        let after = &rest[at + 1..];
        let len = after
            .bytes()
            .take_while(|b| b.is_ascii_uppercase() || *b == b'_')
            .count();
        if len > 0 && after[len..].starts_with('@') {
            found.push(&after[..len]);
            rest = &after[len + 1..];
        } else {
            rest = after;
        }
    }
    found
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown_nobody(path: &Path) {
    std::os::unix::fs::chown(path, Some(65534), Some(65534)).unwrap();
}

/// A CA and a server certificate for localhost / 127.0.0.1 signed by it.
fn certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mailgate test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}
