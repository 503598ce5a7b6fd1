//! Certificates for TLS tests, made with the openssl command: an authority, and certificates
//! it signs for 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A certificate authority in a directory of its own.
pub struct Authority {
    dir: PathBuf,
    name: String,
    pub pem: PathBuf,
}

/// A certificate and its key.
pub struct Issued {
    pub pem: PathBuf,
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Authority {
    /// A self-signed authority `name` (also its file names) in `dir`.
    pub fn new(dir: &Path, name: &str) -> Self {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
            ],
        );
        Self {
            dir: dir.to_owned(),
            name: name.to_owned(),
            pem: dir.join(format!("{name}.pem")),
        }
    }

    /// A certificate `file` (also its subject's common name) for IP 127.0.0.1, signed by this
    /// authority.
    pub fn issue(&self, file: &str) -> Issued {
        openssl(
            &self.dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={file}"),
                "-keyout",
                &format!("{file}.key"),
                "-out",
                &format!("{file}.csr"),
            ],
        );
        std::fs::write(self.dir.join("san.cnf"), "subjectAltName=IP:127.0.0.1\n").expect("san");
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                &format!("{file}.csr"),
                "-CA",
                &format!("{}.pem", self.name),
                "-CAkey",
                &format!("{}.key", self.name),
                "-CAcreateserial",
                "-extfile",
                "san.cnf",
                "-out",
                &format!("{file}.pem"),
            ],
        );
        Issued {
            pem: self.dir.join(format!("{file}.pem")),
            key: self.dir.join(format!("{file}.key")),
        }
    }
}
