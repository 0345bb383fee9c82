//! `dev-certs`: a throwaway CA and server certificate written for local testing.

use std::process::ExitCode;

pub(super) fn run(dir: &std::path::Path, names: &[String]) -> ExitCode {
    let mut dns: Vec<&str> = vec!["localhost"];
    dns.extend(names.iter().map(String::as_str));
    let loopback = [std::net::IpAddr::from([127, 0, 0, 1])];
    let written = crate::lab::devcerts::DevPki::new("scim-proxy dev CA")
        .map_err(|e| e.to_string())
        .and_then(|pki| {
            let leaf = pki.issue(&dns, &loopback).map_err(|e| e.to_string())?;
            write_dev_certs(dir, pki.ca_pem(), &leaf)
        });
    match written {
        Ok(()) => {
            println!(
                "wrote {0}/ca.pem, {0}/server.crt, {0}/server.key (for {1})",
                dir.display(),
                dns.join(", ")
            );
            println!(
                "trust ca.pem in the test client only; production needs a publicly trusted certificate"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dev-certs: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write_dev_certs(
    dir: &std::path::Path,
    ca_pem: &str,
    leaf: &crate::lab::devcerts::IssuedCert,
) -> Result<(), String> {
    use std::io::Write;
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let write = |name: &str, text: &str, private: bool| -> Result<(), String> {
        let path = dir.join(name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let _ = private;
        let mut file = options
            .open(&path)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        file.write_all(text.as_bytes())
            .map_err(|e| format!("writing {}: {e}", path.display()))
    };
    write("ca.pem", ca_pem, false)?;
    write("server.crt", &leaf.cert_pem, false)?;
    write("server.key", &leaf.key_pem, true)
}
