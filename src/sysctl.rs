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
    // As in sysctl(8), a `/` inside a dotted name stands for a `.` in that component
    // (`net.ipv4.conf.eth0/1.rp_filter` is /proc/sys/net/ipv4/conf/eth0.1/rp_filter).
    let well_formed = parts.len() >= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.starts_with('/')
                && !p.ends_with('/')
                && !p.contains("//")
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'/'))
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
    if value.is_empty() || value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(format!(
            "the value '{}' for '{name}' is empty or has control characters",
            value.escape_debug()
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
    p.extend(name.split('.').map(|part| part.replace('/', ".")));
    p
}

/// An integer as the kernel reads one (`proc_dointvec`: base 16 after `0x`, base 8
/// after a leading `0`, else base 10).
fn kernel_int(s: &str) -> Option<i128> {
    let (neg, t) = match s.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, s),
    };
    let v = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        i128::from_str_radix(h, 16).ok()?
    } else if t.len() > 1 && t.starts_with('0') {
        i128::from_str_radix(&t[1..], 8).ok()?
    } else {
        t.parse().ok()?
    };
    Some(if neg { -v } else { v })
}

/// Whether the value read back is the value written: word by word, numbers compared
/// as the kernel parsed them (`010` reads back as `8`).
fn same_value(got: &str, want: &str) -> bool {
    let (g, w): (Vec<&str>, Vec<&str>) = (
        got.split_whitespace().collect(),
        want.split_whitespace().collect(),
    );
    g.len() == w.len()
        && g.iter().zip(&w).all(|(a, b)| {
            a == b || matches!((kernel_int(a), kernel_int(b)), (Some(x), Some(y)) if x == y)
        })
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
    let got = match std::fs::read_to_string(&path) {
        Ok(g) => g,
        // A write-only sysctl (such as net.ipv4.route.flush): set, nothing to compare.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Ok(format!(
                "{} (write-only, not read back)",
                normalise(&s.value)
            ));
        }
        Err(e) => return Err(format!("cannot read back {}: {e}", s.name)),
    };
    let (got, want) = (normalise(&got), normalise(&s.value));
    if !same_value(&got, &want) {
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
        assert!(parse_setting("net.ipv4.conf.eth0/1.rp_filter=1").is_ok());
        for bad in [
            "kernel.pid_max=10",
            "net..core=1",
            "net.core.somaxconn",
            "net.core.somaxconn=",
            "net/core/somaxconn=1",
            "net.core.../x=1",
            "net.a//b.c=1",
            "net./a.b=1",
            "net.a.b=1\u{85}x",
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
        // A '/' in a component is a '.' in the file name; numbers compare as the kernel
        // reads them.
        let vlan = root.join("net/ipv4/conf/eth0.1");
        std::fs::create_dir_all(&vlan).unwrap();
        std::fs::write(vlan.join("rp_filter"), "2\n").unwrap();
        let s = parse_setting("net.ipv4.conf.eth0/1.rp_filter=0x2").unwrap();
        assert!(apply(&root, &s).is_ok());
        assert!(same_value("8", "010") && same_value("16", "0x10") && !same_value("8", "9"));
        let missing = parse_setting("net.ipv4.nope=1").unwrap();
        let e = apply(&root, &missing).unwrap_err();
        assert!(e.contains("no such sysctl"), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
