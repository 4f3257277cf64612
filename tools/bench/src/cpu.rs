//! Where a phase's CPU went: the service, Postgres (every `postgres` process on the machine,
//! with the backends that have exited), and the generator itself, read from `/proc` before and
//! after. Divided by the requests served, it says what one pledge costs each of them.

use serde::Serialize;

/// Linux reports process times in clock ticks of 1/100 s (`getconf CLK_TCK` on every
/// architecture this runs on).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds used so far.
#[derive(Clone, Copy, Default)]
pub struct Sample {
    service: f64,
    postgres: f64,
    generator: f64,
}

/// A process's `(name, user + system, user + system of its reaped children)`, in seconds.
fn times(stat_path: &std::path::Path) -> Option<(String, f64, f64)> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    // The name is in parentheses and may hold spaces; the fields after it are plain.
    let (head, tail) = stat.rsplit_once(") ")?;
    let name = head.split_once(" (")?.1.to_string();
    let fields: Vec<f64> = tail.split(' ').map(|f| f.parse().unwrap_or(0.0)).collect();
    // After the name: state(0) … utime(11) stime(12) cutime(13) cstime(14).
    let own = (fields.get(11)? + fields.get(12)?) / TICKS_PER_SECOND;
    let children = (fields.get(13)? + fields.get(14)?) / TICKS_PER_SECOND;
    Some((name, own, children))
}

impl Sample {
    pub fn now(service_pid: Option<u32>) -> Sample {
        let service = service_pid
            .and_then(|pid| times(&std::path::Path::new("/proc").join(pid.to_string()).join("stat")))
            .map_or(0.0, |(_, own, _)| own);
        let generator = times(std::path::Path::new("/proc/self/stat")).map_or(0.0, |(_, own, _)| own);
        let mut postgres = 0.0;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            if let Some((name, own, children)) = times(&entry.path().join("stat"))
                && name == "postgres"
            {
                postgres += own + children;
            }
        }
        Sample {
            service,
            postgres,
            generator,
        }
    }
}

/// CPU per request served in a phase, in microseconds.
#[derive(Clone, Copy, Serialize)]
pub struct PerRequest {
    pub service_us: f64,
    pub postgres_us: f64,
    pub generator_us: f64,
}

impl PerRequest {
    pub fn between(before: Sample, after: Sample, requests: u64) -> Option<PerRequest> {
        let n = requests as f64;
        (requests > 0).then(|| PerRequest {
            service_us: ((after.service - before.service) / n * 1e6).round(),
            postgres_us: ((after.postgres - before.postgres) / n * 1e6).round(),
            generator_us: ((after.generator - before.generator) / n * 1e6).round(),
        })
    }
}
