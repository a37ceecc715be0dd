//! `vrypt-server sysctl NAME=VALUE...`: sets network sysctls from the server's own
//! image, so a Kubernetes init container needs no second image with a shell.
//!
//! Only `net.*` names are accepted: those belong to the network namespace of the
//! pod, which is all an init container should change. Each value is written to
//! `/proc/sys/...`, read back and compared with whitespace collapsed (the kernel
//! prints `net.ipv4.ip_local_port_range` with a tab). The first failure stops the
//! run with one line on stderr.

use std::path::PathBuf;

/// One `NAME=VALUE` argument, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Setting {
    pub(crate) name: String,
    pub(crate) value: String,
}

/// Parses `NAME=VALUE`; the message completes "invalid argument: ".
pub(crate) fn parse_setting(arg: &str) -> Result<Setting, String> {
    let (name, value) = arg
        .split_once('=')
        .ok_or_else(|| format!("'{}' is not NAME=VALUE", arg.escape_debug()))?;
    let name = name.trim();
    let value = value.trim();
    let parts: Vec<&str> = name.split('.').collect();
    let well_formed = parts.len() >= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    if !well_formed {
        return Err(format!(
            "'{}' is not a sysctl name (for example net.core.somaxconn)",
            name.escape_debug()
        ));
    }
    if parts[0] != "net" {
        return Err(format!(
            "'{name}' is not a net.* sysctl (only network sysctls can be set)"
        ));
    }
    if value.is_empty() || value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(format!(
            "the value for '{name}' is empty or has control characters"
        ));
    }
    Ok(Setting {
        name: name.to_string(),
        value: value.to_string(),
    })
}

/// Words of `s` joined by one space.
fn normalise(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn path_of(root: &std::path::Path, name: &str) -> PathBuf {
    let mut p = root.to_path_buf();
    p.extend(name.split('.'));
    p
}

/// Writes and checks one setting under `root` (`/proc/sys` in production).
pub(crate) fn apply(root: &std::path::Path, s: &Setting) -> Result<String, String> {
    let path = path_of(root, &s.name);
    if !path.is_file() {
        return Err(format!(
            "{}: no such sysctl in this kernel or network namespace ({} is missing)",
            s.name,
            path.display()
        ));
    }
    std::fs::write(&path, format!("{}\n", s.value)).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied
            || e.raw_os_error() == Some(libc::EROFS)
        {
            " (it needs a privileged container, and a sysctl that belongs to the network \
             namespace: some net.* sysctls can only be set on the host)"
        } else {
            ""
        };
        format!("cannot set {}={}: {e}{hint}", s.name, s.value)
    })?;
    let got =
        std::fs::read_to_string(&path).map_err(|e| format!("cannot read back {}: {e}", s.name))?;
    let (got, want) = (normalise(&got), normalise(&s.value));
    if got != want {
        return Err(format!(
            "{} reads back as '{got}' after writing '{want}'",
            s.name
        ));
    }
    Ok(got)
}

/// Applies every setting in order; prints `NAME = VALUE` for each one set. Returns
/// the exit code: 0, or 1 after the first failure (one line on stderr).
pub(crate) fn run(settings: &[Setting]) -> i32 {
    let root = std::path::Path::new("/proc/sys");
    for s in settings {
        match apply(root, s) {
            Ok(v) => println!("{} = {v}", s.name),
            Err(e) => {
                eprintln!("vrypt-server: sysctl: {e}");
                return 1;
            }
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_net_only_and_well_formed() {
        assert_eq!(
            parse_setting("net.core.somaxconn=4096"),
            Ok(Setting {
                name: "net.core.somaxconn".into(),
                value: "4096".into()
            })
        );
        assert!(parse_setting("net.ipv4.ip_local_port_range=1024 65535").is_ok());
        for bad in [
            "kernel.pid_max=10",
            "net..core=1",
            "net.core.somaxconn",
            "net.core.somaxconn=",
            "net/core/somaxconn=1",
            "net.core.../x=1",
            "net=1",
            "net.a\nb=1",
        ] {
            let e = parse_setting(bad).unwrap_err();
            assert!(!e.contains('\n'), "{bad}: {e}");
        }
    }

    #[test]
    fn writes_reads_back_and_reports_missing_names() {
        let root = std::env::temp_dir().join(format!("vrypt-sysctl-{}", std::process::id()));
        let dir = root.join("net/ipv4");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ip_local_port_range"), "32768\t60999\n").unwrap();
        let s = parse_setting("net.ipv4.ip_local_port_range=1024   65535").unwrap();
        assert_eq!(apply(&root, &s), Ok("1024 65535".into()));
        let missing = parse_setting("net.ipv4.nope=1").unwrap();
        let e = apply(&root, &missing).unwrap_err();
        assert!(e.contains("no such sysctl"), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
