//! Command line and environment parsing (lexopt). The environment is applied first,
//! then the flags, so a flag always wins.

use super::values;
use super::{Config, Listen, StatsdSettings, DEFAULT_PORT};
use crate::log::Level;
use std::ffi::OsString;
use std::time::Duration;

/// What the process was asked to do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Command {
    Serve(Box<Config>),
    /// `healthcheck [--url URL] [--timeout DUR]`.
    Healthcheck {
        url: String,
        timeout: Duration,
    },
    /// `sysctl NAME=VALUE...`.
    Sysctl(Vec<crate::sysctl::Setting>),
    Help,
    Version,
}

/// The `--help` text.
pub(crate) fn usage() -> String {
    format!(
        "vrypt-server {version}
Answers every HTTP/1.1 request with one fixed response, very fast.

Usage: vrypt-server [OPTIONS] [PORT]
       vrypt-server healthcheck [--url URL] [--timeout DURATION]
       vrypt-server sysctl NAME=VALUE...

Every option can also be set with the environment variable shown; a flag wins.
Durations: 10 (seconds), 10s, 500ms, 2m, 1h.

Listening:
      --listen ADDR:PORT      address to bind [VRYPT_LISTEN] (default [::]:{port}, dual-stack,
                              or 0.0.0.0:{port} without IPv6)
  -p, --port PORT             port on the default address [VRYPT_PORT, PORT] (default {port});
                              a bare PORT argument does the same
      --workers N             worker threads, one listener each [VRYPT_WORKERS] (default: CPUs)
      --backlog N             listen backlog, capped by net.core.somaxconn [VRYPT_BACKLOG] (default 65535)
      --max-connections N     open connections per process, 0 = no limit [VRYPT_MAX_CONNECTIONS] (default 0)

Requests:
      --max-header-bytes N    request line + headers limit; 414/431 beyond [VRYPT_MAX_HEADER_BYTES] (default 8192)
      --header-timeout DUR    time to receive a request's headers, then 408 [VRYPT_HEADER_TIMEOUT] (default 10s)
      --idle-timeout DUR      close idle keep-alive connections after [VRYPT_IDLE_TIMEOUT] (default 60s)
      --body-timeout DUR      time to receive a request's whole body, then 408 [VRYPT_BODY_TIMEOUT] (default 60s)
      --write-timeout DUR     close clients that stop reading after [VRYPT_WRITE_TIMEOUT] (default 10s)
      --shutdown-timeout DUR  on SIGTERM, time to finish in-flight requests [VRYPT_SHUTDOWN_TIMEOUT] (default 10s)
      --shutdown-delay DUR    on SIGTERM, keep serving this long while readiness answers 503,
                              then drain [VRYPT_SHUTDOWN_DELAY] (default 0)

Response:
      --status CODE           status code, 200-599 [VRYPT_STATUS] (default 200)
      --body TEXT             body [VRYPT_BODY] (default Vrypt)
      --body-file PATH        body read from a file at start, at most 64 MiB [VRYPT_BODY_FILE]
      --body-size SIZE        body of exactly SIZE bytes (64KiB, 10MiB, up to 1GiB): the body
                              repeated, or x; held once per process [VRYPT_BODY_SIZE]
      --content-type TYPE     Content-Type [VRYPT_CONTENT_TYPE] (default text/plain)
      --header 'NAME: VALUE'  extra header, repeatable [VRYPT_HEADER, one per line]
                              Templates in the body and header values, expanded at start:
                              {{hostname}} {{version}} {{worker}} {{env:NAME}}; {{{{ and }}}} are braces
      --no-server-header      do not send 'Server: vrypt' [VRYPT_NO_SERVER_HEADER=true]

Load testing (random choices are per worker; --seed makes a run reproducible):
      --delay SPEC            time from a request's head to its answer: 50ms, uniform:10ms..200ms
                              or percentiles:p50=20ms,p90=60ms,p99=250ms,p100=1s [VRYPT_DELAY]
      --status-mix S=W,...    draw each response's status by weight, e.g. 200=98,503=1.5,500=0.5
                              [VRYPT_STATUS_MIX]; the body and headers stay as configured
      --fault KIND=P,...      per request, inject reset (TCP RST), close (FIN, no answer) or
                              stall (no answer until --idle-timeout), e.g. reset=0.1%,stall=0.05%
                              [VRYPT_FAULT]
      --seed N                seed of every random choice [VRYPT_SEED] (default: from the clock,
                              logged at start)

Health and metrics:
      --admin-listen ADDR:PORT  admin listener with /healthz, /readyz and /metrics (Prometheus),
                              not counted in --max-connections [VRYPT_ADMIN_LISTEN] (default off)
      --health-path PATH      on the serving port, this path answers 200 ok (503 while
                              shutting down), whatever --status says [VRYPT_HEALTH_PATH] (default off)
      --statsd HOST:PORT|off  StatsD collector over UDP [VRYPT_STATSD] (default 127.0.0.1:8125)
      --statsd-interval DUR   push interval [VRYPT_STATSD_INTERVAL] (default 1s)
      --statsd-prefix PREFIX  metric name prefix [VRYPT_STATSD_PREFIX] (default vrypt)
      --statsd-tags K:V,...   DogStatsD tags [VRYPT_STATSD_TAGS]
      --log-level LEVEL       error, warn, info or debug [VRYPT_LOG_LEVEL] (default info)

  -h, --help                  print this help
  -V, --version               print the version

healthcheck: GET URL and exit 0 on a 2xx or 3xx answer within --timeout (default 2s),
1 otherwise. The default URL follows the server's settings (flags or environment): the
admin /healthz when an admin listener is set, else the health path, else /, on the
listen address (a wildcard address means 127.0.0.1).

sysctl: write each net.* sysctl under /proc/sys, read it back and print it; the first
one that cannot be set ends the run with one line and exit code 1.
",
        version = env!("CARGO_PKG_VERSION"),
        port = DEFAULT_PORT
    )
}

/// Largest body the server sends (it is held once per process, never per connection).
const MAX_BODY: usize = 64 << 20;

/// Options that take a value, with their environment variables.
const VALUE_OPTS: &[&str] = &[
    "listen",
    "port",
    "workers",
    "backlog",
    "max-connections",
    "max-header-bytes",
    "header-timeout",
    "idle-timeout",
    "body-timeout",
    "write-timeout",
    "shutdown-timeout",
    "shutdown-delay",
    "admin-listen",
    "health-path",
    "status-mix",
    "fault",
    "body-size",
    "delay",
    "seed",
    "status",
    "body",
    "body-file",
    "content-type",
    "header",
    "statsd",
    "statsd-interval",
    "statsd-prefix",
    "statsd-tags",
    "log-level",
];

/// `listen` -> `VRYPT_LISTEN`.
fn env_name(opt: &str) -> String {
    format!("VRYPT_{}", opt.to_ascii_uppercase().replace('-', "_"))
}

/// Where the body comes from; the last source set wins.
#[derive(Debug, Clone)]
enum BodySource {
    Text(String),
    File(String),
}

/// Settings gathered from the environment and flags before validation across them.
#[derive(Debug, Clone)]
struct Builder {
    cfg: Config,
    listen: Option<Listen>,
    port: Option<u16>,
    body: Option<BodySource>,
    headers: Vec<String>,
    statsd_target: Option<Option<String>>,
    statsd_interval: Duration,
    statsd_prefix: String,
    statsd_tags: Vec<(String, String)>,
}

impl Builder {
    fn new() -> Builder {
        Builder {
            cfg: Config::default(),
            listen: None,
            port: None,
            body: None,
            headers: Vec::new(),
            statsd_target: None,
            statsd_interval: Duration::from_secs(1),
            statsd_prefix: "vrypt".to_string(),
            statsd_tags: Vec::new(),
        }
    }

    /// Applies one option value; the error completes "invalid value for --opt: ".
    fn set(&mut self, opt: &str, v: &str) -> Result<(), String> {
        let c = &mut self.cfg;
        let min_timeout = Duration::from_millis(10);
        match opt {
            "listen" => self.listen = Some(Listen::Exact(values::socket_addr(v)?)),
            "port" => self.port = Some(values::port(v)?),
            "workers" => c.workers = values::integer::<usize>(v, 1, 1024)?,
            "backlog" => c.backlog = values::integer::<i32>(v, 1, i32::MAX)?,
            "max-connections" => c.max_connections = values::integer::<usize>(v, 0, usize::MAX)?,
            "max-header-bytes" => c.max_header_bytes = values::integer::<usize>(v, 256, 1 << 20)?,
            "header-timeout" => c.header_timeout = values::duration_at_least(v, min_timeout)?,
            "idle-timeout" => c.idle_timeout = values::duration_at_least(v, min_timeout)?,
            "body-timeout" => c.body_timeout = values::duration_at_least(v, min_timeout)?,
            "write-timeout" => c.write_timeout = values::duration_at_least(v, min_timeout)?,
            "shutdown-timeout" => c.shutdown_timeout = values::duration(v)?,
            "shutdown-delay" => c.shutdown_delay = values::duration(v)?,
            "admin-listen" => c.admin_listen = values::optional_socket_addr(v)?,
            "health-path" => {
                c.health_path = match v.trim() {
                    "" | "off" => None,
                    p => Some(values::health_path(p)?),
                }
            }
            "status" => c.response.status = values::status(v)?,
            "status-mix" => c.status_mix = values::status_mix(v)?,
            "fault" => c.faults = values::faults(v)?,
            "body-size" => c.response.body_size = Some(values::size(v)?),
            "delay" => {
                let d = crate::server::delay::DelaySpec::parse(v)?;
                c.delay = (!d.is_zero()).then_some(d);
            }
            "seed" => c.seed = Some(values::integer::<u64>(v, 0, u64::MAX)?),
            "body" => self.body = Some(BodySource::Text(v.to_string())),
            "body-file" => self.body = Some(BodySource::File(v.to_string())),
            "content-type" => c.response.content_type = values::content_type(v)?,
            "header" => self.headers.push(v.to_string()),
            "statsd" => {
                let off = matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "off" | "none" | "disabled" | ""
                );
                self.statsd_target = Some(if off {
                    None
                } else {
                    Some(values::host_port(v)?)
                });
            }
            "statsd-interval" => self.statsd_interval = values::duration_at_least(v, min_timeout)?,
            "statsd-prefix" => self.statsd_prefix = values::prefix(v)?,
            "statsd-tags" => self.statsd_tags = values::tags(v)?,
            "log-level" => {
                c.log_level = Level::parse(v)
                    .ok_or_else(|| format!("'{v}' is not one of error, warn, info, debug"))?
            }
            "no-server-header" => c.response.server_header = !values::boolean(v)?,
            _ => return Err(format!("unknown option '{opt}'")),
        }
        Ok(())
    }

    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
        if let Some(v) = env("PORT") {
            self.set("port", &v)
                .map_err(|e| format!("invalid PORT: {e}"))?;
        }
        for opt in VALUE_OPTS.iter().copied().chain(["no-server-header"]) {
            let name = env_name(opt);
            let Some(v) = env(&name) else { continue };
            if opt == "header" {
                self.headers.extend(
                    v.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(String::from),
                );
                continue;
            }
            self.set(opt, &v)
                .map_err(|e| format!("invalid {name}: {e}"))?;
        }
        Ok(())
    }

    fn finish(mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, String> {
        let mut cfg = self.cfg;
        let listen = self.listen.unwrap_or(Listen::AnyAddress(DEFAULT_PORT));
        cfg.listen = match (listen, self.port) {
            (Listen::AnyAddress(_), Some(p)) => Listen::AnyAddress(p),
            (Listen::Exact(mut a), Some(p)) => {
                a.set_port(p);
                Listen::Exact(a)
            }
            (l, None) => l,
        };
        match self.body.take() {
            Some(BodySource::Text(t)) => cfg.response.body = t.into_bytes(),
            Some(BodySource::File(path)) => {
                let body = std::fs::read(&path)
                    .map_err(|e| format!("cannot read --body-file '{path}': {e}"))?;
                if body.len() > MAX_BODY {
                    return Err(format!(
                        "--body-file '{path}' is {} bytes; the limit is 64 MiB",
                        body.len()
                    ));
                }
                cfg.response.body = body;
            }
            None => {}
        }
        cfg.response.status_mix = cfg.status_mix.iter().map(|&(s, _)| s).collect();
        if cfg.response.body.len() > MAX_BODY {
            return Err("--body is longer than 64 MiB".to_string());
        }
        cfg.response.headers = self
            .headers
            .iter()
            .map(|h| values::header(h, cfg.response.server_header))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("invalid value for --header: {e}"))?;
        expand_templates(&mut cfg, env)?;
        cfg.statsd = match self.statsd_target {
            Some(None) => None,
            target => Some(StatsdSettings {
                target: target
                    .flatten()
                    .unwrap_or_else(|| "127.0.0.1:8125".to_string()),
                interval: self.statsd_interval,
                prefix: self.statsd_prefix,
                tags: self.statsd_tags,
            }),
        };
        Ok(cfg)
    }
}

/// Parses the arguments (without the program name) and the environment.
pub(crate) fn parse_args<I>(
    args: I,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Command, String>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut b = Builder::new();
    b.apply_env(env)?;
    let mut flag_headers = Vec::new();
    let mut positional_port = None;
    let mut first = true;
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        let was_first = std::mem::replace(&mut first, false);
        let first = was_first;
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Short('p') => {
                let v = value_string(&mut parser, "-p")?;
                b.set("port", &v)
                    .map_err(|e| format!("invalid value for -p: {e}"))?;
            }
            Long("no-server-header") => b.cfg.response.server_header = false,
            Long(name) if VALUE_OPTS.contains(&name) => {
                let name = name.to_string();
                let v = value_string(&mut parser, &format!("--{name}"))?;
                if name == "header" {
                    flag_headers.push(v);
                } else {
                    b.set(&name, &v)
                        .map_err(|e| format!("invalid value for --{name}: {e}"))?;
                }
            }
            Value(v) => {
                let s = v
                    .into_string()
                    .map_err(|v| format!("unexpected argument '{}'", v.to_string_lossy()))?;
                if s == "healthcheck" && first {
                    return parse_healthcheck(parser, env);
                }
                if s == "sysctl" && first {
                    return parse_sysctl(parser);
                }
                if positional_port.is_some() {
                    return Err(format!("unexpected argument '{s}'"));
                }
                positional_port =
                    Some(values::port(&s).map_err(|e| format!("invalid port argument: {e}"))?);
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    if let Some(p) = positional_port {
        b.port = Some(p);
    }
    if !flag_headers.is_empty() {
        b.headers = flag_headers;
    }
    b.finish(env).map(|c| Command::Serve(Box::new(c)))
}

/// Expands `{hostname}`, `{version}`, `{worker}` and `{env:NAME}` in the body and
/// the header values, for every worker when `{worker}` is used.
fn expand_templates(cfg: &mut Config, env: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
    use super::template::{expand, has_template, hostname, per_worker, Vars};
    // Only a text body is a template: a binary body file (an image, random bytes)
    // is sent exactly as it is, whatever braces it happens to hold.
    let body_template =
        has_template(&cfg.response.body) && std::str::from_utf8(&cfg.response.body).is_ok();
    let headers_template = cfg
        .response
        .headers
        .iter()
        .any(|(_, v)| has_template(v.as_bytes()));
    if !body_template && !headers_template {
        return Ok(());
    }
    cfg.per_worker_body = body_template && per_worker(&cfg.response.body);
    if cfg.per_worker_body && cfg.response.body_size.is_some() {
        return Err(
            "{worker} in the body cannot be used with --body-size (one copy of the body is shared by every worker)"
                .to_string(),
        );
    }
    let per_worker_headers = cfg
        .response
        .headers
        .iter()
        .any(|(_, v)| per_worker(v.as_bytes()));
    let host = hostname();
    // A long body that is not a template is shared by every worker (the server
    // builds one copy): the other workers' specs need none of their own.
    let share_body =
        !body_template && cfg.response.body.len() > crate::http::response::INLINE_BODY_MAX;
    let body = std::mem::take(&mut cfg.response.body);
    let raw = cfg.response.clone();
    let for_worker = |worker: usize| -> Result<crate::http::ResponseSpec, String> {
        let vars = Vars {
            hostname: &host,
            worker,
            env,
        };
        let mut spec = raw.clone();
        if body_template {
            spec.body = expand(&body, &vars).map_err(|e| format!("in the body: {e}"))?;
            if spec.body.len() > MAX_BODY {
                return Err("the body is longer than 64 MiB after expanding templates".into());
            }
        }
        for (name, value) in &mut spec.headers {
            let expanded = expand(value.as_bytes(), &vars)
                .map_err(|e| format!("in --header '{name}': {e}"))?;
            *value = String::from_utf8(expanded)
                .ok()
                .filter(|v| crate::http::chars::is_field_value(v.as_bytes()))
                .ok_or_else(|| {
                    format!("--header '{name}' holds CR, LF or a control character once expanded")
                })?;
        }
        Ok(spec)
    };
    let mut first = for_worker(0)?;
    if cfg.per_worker_body || per_worker_headers {
        cfg.worker_responses = (1..cfg.workers)
            .map(|w| {
                let mut spec = for_worker(w)?;
                if !body_template && !share_body {
                    spec.body.clone_from(&body);
                }
                Ok::<_, String>(spec)
            })
            .collect::<Result<_, _>>()?;
    }
    if !body_template {
        first.body = body;
    }
    cfg.response = first;
    Ok(())
}

fn value_string(parser: &mut lexopt::Parser, flag: &str) -> Result<String, String> {
    let v = parser.value().map_err(|e| e.to_string())?;
    v.into_string()
        .map_err(|_| format!("invalid value for {flag}: not valid UTF-8"))
}

fn parse_healthcheck(
    mut parser: lexopt::Parser,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Command, String> {
    use lexopt::prelude::*;
    // The default URL follows what the server itself would use given the same
    // environment and the same listening flags.
    let mut b = Builder::new();
    b.apply_env(env)?;
    let mut url = env("VRYPT_HEALTHCHECK_URL");
    let mut timeout = Duration::from_secs(2);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("url") => url = Some(value_string(&mut parser, "--url")?),
            Long("timeout") => {
                let v = value_string(&mut parser, "--timeout")?;
                timeout = values::duration_at_least(&v, Duration::from_millis(1))
                    .map_err(|e| format!("invalid value for --timeout: {e}"))?;
            }
            Short('p') => {
                let v = value_string(&mut parser, "-p")?;
                b.set("port", &v)
                    .map_err(|e| format!("invalid value for -p: {e}"))?;
            }
            Long(name @ ("listen" | "port" | "admin-listen" | "health-path")) => {
                let name = name.to_string();
                let v = value_string(&mut parser, &format!("--{name}"))?;
                b.set(&name, &v)
                    .map_err(|e| format!("invalid value for --{name}: {e}"))?;
            }
            Short('h') | Long("help") => return Ok(Command::Help),
            other => return Err(other.unexpected().to_string()),
        }
    }
    let url = url.unwrap_or_else(|| default_health_url(&b));
    Ok(Command::Healthcheck { url, timeout })
}

/// `http://ADDR/` with an IPv6 address in brackets.
fn http_url(addr: std::net::SocketAddr, path: &str) -> String {
    format!("http://{}{path}", super::local_target(addr))
}

/// The admin `/healthz` when there is an admin listener, else the health path, else
/// `/`, on the address the server would listen on.
fn default_health_url(b: &Builder) -> String {
    if let Some(admin) = b.cfg.admin_listen {
        return http_url(admin, "/healthz");
    }
    let port = b
        .port
        .or(b.listen.map(|l| l.port()))
        .unwrap_or(DEFAULT_PORT);
    let mut addr = match b.listen {
        Some(Listen::Exact(a)) => a,
        _ => std::net::SocketAddr::from(([0, 0, 0, 0], port)),
    };
    addr.set_port(port);
    http_url(addr, b.cfg.health_path.as_deref().unwrap_or("/"))
}

fn parse_sysctl(mut parser: lexopt::Parser) -> Result<Command, String> {
    use lexopt::prelude::*;
    let mut settings = Vec::new();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Value(v) => {
                let s = v
                    .into_string()
                    .map_err(|_| "sysctl: an argument is not valid UTF-8".to_string())?;
                settings
                    .push(crate::sysctl::parse_setting(&s).map_err(|e| format!("sysctl: {e}"))?);
            }
            other => return Err(format!("sysctl: {}", other.unexpected())),
        }
    }
    if settings.is_empty() {
        return Err(
            "sysctl: give at least one NAME=VALUE (for example net.core.somaxconn=65535)".into(),
        );
    }
    Ok(Command::Sysctl(settings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Command, String> {
        let map: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_args(args.iter().copied(), &move |k| map.get(k).cloned())
    }

    fn cfg(args: &[&str], env: &[(&str, &str)]) -> Config {
        match parse(args, env) {
            Ok(Command::Serve(c)) => *c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ports_from_everywhere() {
        assert_eq!(cfg(&[], &[]).listen, Listen::AnyAddress(8080));
        assert_eq!(cfg(&["9000"], &[]).listen, Listen::AnyAddress(9000));
        assert_eq!(cfg(&["-p", "9001"], &[]).listen, Listen::AnyAddress(9001));
        assert_eq!(
            cfg(&[], &[("PORT", "9002")]).listen,
            Listen::AnyAddress(9002)
        );
        assert_eq!(
            cfg(&[], &[("PORT", "9002"), ("VRYPT_PORT", "9003")]).listen,
            Listen::AnyAddress(9003)
        );
        assert_eq!(
            cfg(&["--port=9004"], &[("VRYPT_PORT", "9003")]).listen,
            Listen::AnyAddress(9004)
        );
        let exact = cfg(&["--listen", "127.0.0.1:81"], &[]).listen;
        assert_eq!(exact, Listen::Exact("127.0.0.1:81".parse().unwrap()));
    }

    #[test]
    fn flags_win_over_env() {
        let c = cfg(
            &["--workers", "3"],
            &[("VRYPT_WORKERS", "5"), ("VRYPT_BODY", "env")],
        );
        assert_eq!(c.workers, 3);
        assert_eq!(c.response.body, b"env");
        let c = cfg(
            &["--header", "X-B: 2"],
            &[("VRYPT_HEADER", "X-A: 1\nX-C: 3")],
        );
        assert_eq!(
            c.response.headers,
            vec![("X-B".to_string(), "2".to_string())]
        );
        let c = cfg(
            &[],
            &[
                ("VRYPT_HEADER", "X-A: 1\nX-C: 3"),
                ("VRYPT_NO_SERVER_HEADER", "true"),
            ],
        );
        assert_eq!(c.response.headers.len(), 2);
        assert!(!c.response.server_header);
    }

    #[test]
    fn statsd_settings() {
        assert_eq!(cfg(&["--statsd", "off"], &[]).statsd, None);
        let s = cfg(
            &["--statsd-prefix", "edge"],
            &[("VRYPT_STATSD", "graphite:8125")],
        )
        .statsd
        .unwrap();
        assert_eq!(
            (s.target.as_str(), s.prefix.as_str()),
            ("graphite:8125", "edge")
        );
    }

    #[test]
    fn errors_are_one_line() {
        for args in [
            &["--workers", "zero"][..],
            &["--bogus"],
            &["--status", "99"],
            &["--header", "Bad Name: x"],
            &["1", "2"],
            &["--listen", "nowhere"],
            &["--port"],
        ] {
            let e = parse(args, &[]).unwrap_err();
            assert!(!e.is_empty() && !e.contains('\n'), "{args:?}: {e}");
        }
        assert!(parse(&[], &[("VRYPT_WORKERS", "x")])
            .unwrap_err()
            .starts_with("invalid VRYPT_WORKERS"));
    }

    fn health_url(args: &[&str], env: &[(&str, &str)]) -> String {
        let mut all = vec!["healthcheck"];
        all.extend_from_slice(args);
        match parse(&all, env) {
            Ok(Command::Healthcheck { url, .. }) => url,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn healthcheck_follows_admin_listener_health_path_and_listen_host() {
        assert_eq!(health_url(&[], &[]), "http://127.0.0.1:8080/");
        assert_eq!(
            health_url(&[], &[("VRYPT_LISTEN", "[::1]:8081")]),
            "http://[::1]:8081/"
        );
        assert_eq!(
            health_url(&["--listen", "[::]:8082"], &[]),
            "http://127.0.0.1:8082/"
        );
        assert_eq!(
            health_url(&[], &[("VRYPT_HEALTH_PATH", "/healthz"), ("PORT", "9")]),
            "http://127.0.0.1:9/healthz"
        );
        assert_eq!(
            health_url(
                &[],
                &[
                    ("VRYPT_ADMIN_LISTEN", "[::]:9901"),
                    ("VRYPT_HEALTH_PATH", "/healthz")
                ]
            ),
            "http://127.0.0.1:9901/healthz"
        );
        assert_eq!(
            health_url(&["--admin-listen", "[::1]:9902"], &[]),
            "http://[::1]:9902/healthz"
        );
        assert_eq!(
            health_url(
                &["--url", "http://x:1/"],
                &[("VRYPT_ADMIN_LISTEN", "[::]:1")]
            ),
            "http://x:1/"
        );
    }

    #[test]
    fn sysctl_arguments() {
        assert!(matches!(
            parse(&["sysctl", "net.core.somaxconn=1024"], &[]),
            Ok(Command::Sysctl(s)) if s.len() == 1
        ));
        for bad in [
            &["sysctl"][..],
            &["sysctl", "kernel.x=1"],
            &["sysctl", "--bogus"],
        ] {
            let e = parse(bad, &[]).unwrap_err();
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn health_and_shutdown_flags() {
        let c = cfg(
            &["--health-path", "/ping", "--shutdown-delay", "2s"],
            &[("VRYPT_ADMIN_LISTEN", "127.0.0.1:9901")],
        );
        assert_eq!(c.health_path.as_deref(), Some("/ping"));
        assert_eq!(c.shutdown_delay, Duration::from_secs(2));
        assert_eq!(c.admin_listen, Some("127.0.0.1:9901".parse().unwrap()));
        assert_eq!(
            cfg(
                &["--admin-listen", "off"],
                &[("VRYPT_ADMIN_LISTEN", "[::]:1")]
            )
            .admin_listen,
            None
        );
        assert!(parse(&["--health-path", "ping"], &[]).is_err());
    }

    #[test]
    fn healthcheck_defaults_follow_port() {
        assert_eq!(
            parse(&["healthcheck"], &[("PORT", "9100")]),
            Ok(Command::Healthcheck {
                url: "http://127.0.0.1:9100/".into(),
                timeout: Duration::from_secs(2)
            })
        );
        let c = parse(
            &[
                "healthcheck",
                "--url",
                "http://[::1]:1/",
                "--timeout",
                "500ms",
            ],
            &[],
        );
        assert_eq!(
            c,
            Ok(Command::Healthcheck {
                url: "http://[::1]:1/".into(),
                timeout: Duration::from_millis(500)
            })
        );
    }
}
