//! Templates in `--body`, `--body-file` and `--header` values, expanded once at
//! start: `{hostname}`, `{version}`, `{worker}` (the worker index: each worker gets
//! its own precomputed responses), `{env:NAME}`. `{{` and `}}` are literal braces;
//! any other text in braces is kept as it is. Nothing is expanded per request.

/// What the placeholders stand for.
#[derive(Clone, Copy)]
pub(crate) struct Vars<'a> {
    pub(crate) hostname: &'a str,
    pub(crate) worker: usize,
    pub(crate) env: &'a dyn Fn(&str) -> Option<String>,
}

/// Whether `text` is a template: it names a placeholder. Text without one (a JSON
/// body with `}}`, CSS, any binary) is sent exactly as given.
pub(crate) fn has_template(text: &[u8]) -> bool {
    PLACEHOLDERS.iter().any(|p| find(text, p)) || find(text, b"{env:")
}

/// Whether `text` uses `{worker}`, so that each worker needs its own copy.
pub(crate) fn per_worker(text: &[u8]) -> bool {
    find(text, b"{worker}")
}

const PLACEHOLDERS: [&[u8]; 3] = [b"{hostname}", b"{version}", b"{worker}"];

fn find(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Expands `text`; an `{env:NAME}` whose variable is not set is an error.
pub(crate) fn expand(text: &[u8], vars: &Vars<'_>) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut open_escapes = 0usize;
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        // `{{` is a literal `{`; a `}}` is a literal `}` when it closes a `{{`
        // (so `{{worker}}` gives `{worker}`), and is left alone otherwise (so a
        // nested JSON object's `}}` survives).
        if rest.starts_with(b"{{") {
            out.push(b'{');
            open_escapes += 1;
            i += 2;
            continue;
        }
        if rest.starts_with(b"}}") && open_escapes > 0 {
            out.push(b'}');
            open_escapes -= 1;
            i += 2;
            continue;
        }
        if rest[0] == b'{' {
            if let Some(end) = rest.iter().position(|&b| b == b'}') {
                let name = &rest[1..end];
                let value = match name {
                    b"hostname" => Some(vars.hostname.to_string()),
                    b"version" => Some(env!("CARGO_PKG_VERSION").to_string()),
                    b"worker" => Some(vars.worker.to_string()),
                    _ => match name.strip_prefix(b"env:") {
                        Some(var) => {
                            let var = std::str::from_utf8(var)
                                .ok()
                                .filter(|v| !v.is_empty())
                                .ok_or_else(|| "{env:NAME} needs a variable name".to_string())?;
                            Some((vars.env)(var).ok_or_else(|| {
                                format!("{{env:{var}}} is used but {var} is not set")
                            })?)
                        }
                        None => None,
                    },
                };
                if let Some(v) = value {
                    out.extend_from_slice(v.as_bytes());
                    i += end + 1;
                    continue;
                }
            }
        }
        out.push(rest[0]);
        i += 1;
    }
    Ok(out)
}

/// This host's name (`uname -n`), or `localhost` when it cannot be read.
pub(crate) fn hostname() -> String {
    // SAFETY: a zeroed utsname is a valid value for uname to overwrite.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return "localhost".to_string();
    }
    let bytes: Vec<u8> = u
        .nodename
        .iter()
        .take_while(|&&c| c != 0)
        // c_char is i8 on x86 and u8 on Arm: a byte either way.
        .map(|&c| c.to_ne_bytes()[0])
        .collect();
    String::from_utf8(bytes).unwrap_or_else(|_| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(worker: usize) -> impl Fn(&[u8]) -> Result<String, String> {
        move |t: &[u8]| {
            let env = |k: &str| (k == "ZONE").then(|| "eu-1".to_string());
            let v = Vars {
                hostname: "box",
                worker,
                env: &env,
            };
            expand(t, &v).map(|b| String::from_utf8(b).unwrap())
        }
    }

    #[test]
    fn placeholders_escapes_and_other_braces() {
        let x = vars(3);
        assert_eq!(x(b"{hostname}/{worker}").unwrap(), "box/3");
        assert_eq!(x(b"{env:ZONE}").unwrap(), "eu-1");
        assert_eq!(
            x(b"{version}").unwrap(),
            env!("CARGO_PKG_VERSION").to_string()
        );
        assert_eq!(x(b"{{worker}} {\"a\":1}").unwrap(), "{worker} {\"a\":1}");
        assert_eq!(x(b"a}}b{").unwrap(), "a}}b{");
        assert_eq!(
            x(b"{\"w\":{worker},\"m\":{\"a\":1}}").unwrap(),
            "{\"w\":3,\"m\":{\"a\":1}}",
            "a nested JSON object keeps its braces"
        );
        assert!(x(b"{env:NOPE}").unwrap_err().contains("NOPE is not set"));
        assert!(per_worker(b"x{worker}") && !per_worker(b"{hostname}"));
        assert!(has_template(b"{worker}") && !has_template(b"{\"a\":{\"b\":1}}"));
    }
}
