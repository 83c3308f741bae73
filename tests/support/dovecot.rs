//! A private Dovecot (IMAP + POP3) on loopback for tests against a real
//! upstream server: its own config, ports, TLS certificate signed by its own
//! CA (so clients verify it through an extra CA file), one user, and doveadm
//! to put mail in and read flags back.
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
        let r = root.display();
        let conf = format!(
            r#"base_dir = {r}/run
state_dir = {r}/state
log_path = {r}/dovecot.log
info_log_path = {r}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = yes
ssl_cert = <{r}/cert.pem
ssl_key = <{r}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir{layout}
mail_uid = 65534
mail_gid = 65534
first_valid_uid = 1
pop3_uidl_format = %08Xu%08Xv
default_login_user = nobody
default_internal_user = nobody
namespace inbox {{
  inbox = yes
  separator = {sep}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {r}/passwd
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home={r}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {p0}
  }}
  inet_listener imaps {{
    port = {p1}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {p2}
  }}
  inet_listener pop3s {{
    port = {p3}
    ssl = yes
  }}
}}
"#,
            p0 = ports[0],
            p1 = ports[1],
            p2 = ports[2],
            p3 = ports[3],
        );
        let conf_path = root.join("dovecot.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(binary)
            .arg("-F")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
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
        dovecot.wait_ready();
        // Make the INBOX exist, so that an empty mailbox is a valid state.
        dovecot.doveadm(&["mailbox", "status", "-u", USER, "messages", "INBOX"]);
        dovecot
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in [
            self.imap_port,
            self.imaps_port,
            self.pop3_port,
            self.pop3s_port,
        ] {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                if Instant::now() > deadline {
                    panic!("dovecot did not listen on {port}; log:\n{}", self.log());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
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
