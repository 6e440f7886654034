//! The splits in force, layer by layer, and their refresh from the file
//! and Redis.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bff_telemetry::names;
use parking_lot::{Mutex, RwLock};

use crate::settings::read_file;
use crate::{Flag, FlagsConfig, Split, split};

/// Where a flag's split in force comes from; a later one wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// What the BFF declares.
    Default,
    /// `BFF_FLAGS_FILE`.
    File,
    /// `BFF_FLAG_{KEY}`.
    Env,
    /// The BFF's hash in Redis: the same on every replica, changed without
    /// a restart.
    Redis,
}

#[derive(Debug, Clone)]
struct Layers {
    default: Split,
    file: Option<Split>,
    env: Option<Split>,
    redis: Option<Split>,
}

impl Layers {
    fn current(&self) -> (&Split, Source) {
        if let Some(s) = &self.redis {
            (s, Source::Redis)
        } else if let Some(s) = &self.env {
            (s, Source::Env)
        } else if let Some(s) = &self.file {
            (s, Source::File)
        } else {
            (&self.default, Source::Default)
        }
    }
}

/// How the last refreshes from Redis went.
#[derive(Debug, Clone, Default)]
pub(crate) struct Status {
    pub(crate) last_ok: Option<SystemTime>,
    pub(crate) last_error: Option<String>,
}

/// The flags of one BFF and the splits in force.
#[derive(Debug)]
pub(crate) struct Store {
    pub(crate) flags: &'static [Flag],
    layers: RwLock<Vec<Layers>>,
    pub(crate) status: Mutex<Status>,
}

impl Store {
    pub(crate) fn new(config: &FlagsConfig) -> Self {
        let layers = config
            .flags
            .iter()
            .map(|flag| Layers {
                // Checked by `FlagsConfig::configure`; an empty split is
                // not expected, the first variant is the fallback then.
                default: Split::parse(flag, flag.default).unwrap_or_else(|_| Split::first(flag)),
                file: config.from_file.get(flag.key).cloned(),
                env: config.env.get(flag.key).cloned(),
                redis: None,
            })
            .collect();
        Store {
            flags: config.flags,
            layers: RwLock::new(layers),
            status: Mutex::new(Status::default()),
        }
    }

    fn index(&self, key: &str) -> Option<usize> {
        self.flags.iter().position(|f| f.key == key)
    }

    /// The variant of flag `key` for `subject`; `None` for a flag this BFF
    /// does not declare.
    pub(crate) fn variant(&self, key: &str, subject: &str) -> Option<&'static str> {
        let i = self.index(key)?;
        let flag = &self.flags[i];
        let bucket = split::bucket(flag.key, subject);
        let layers = self.layers.read();
        Some(layers[i].current().0.variant(flag, bucket))
    }

    /// Each flag's split in force and its source.
    pub(crate) fn current(&self) -> Vec<(&'static Flag, Split, Source)> {
        let layers = self.layers.read();
        self.flags
            .iter()
            .zip(layers.iter())
            .map(|(flag, l)| {
                let (split, source) = l.current();
                (flag, split.clone(), source)
            })
            .collect()
    }

    fn set_file(&self, splits: &BTreeMap<&'static str, Split>) {
        let mut layers = self.layers.write();
        for (flag, l) in self.flags.iter().zip(layers.iter_mut()) {
            l.file = splits.get(flag.key).cloned();
        }
    }

    /// Sets flag `key`'s split from Redis; whether it changed.
    fn set_redis(&self, key: &str, split: Option<Split>) -> bool {
        let Some(i) = self.index(key) else {
            return false;
        };
        let mut layers = self.layers.write();
        let changed = layers[i].redis != split;
        layers[i].redis = split;
        changed
    }
}

/// Refused or failed refreshes: counted, and logged when the state
/// changes (not every second while Redis is down).
fn refresh_error(reason: &'static str) {
    metrics::counter!(names::FLAG_REFRESH_ERRORS, "reason" => reason).increment(1);
}

/// What tells a changed file: its modification time and size (the size
/// too, as mtimes may be coarse).
pub(crate) type Stamp = Option<(SystemTime, u64)>;

/// The stamp of the file at `path` now (`None` when it cannot be read).
pub(crate) fn stamp(path: &std::path::Path) -> Stamp {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
}

/// Where the shared splits live: the BFF's hash in Redis.
pub(crate) struct Shared {
    pub(crate) conn: bff_redis::ConnectionManager,
    pub(crate) key: String,
    pub(crate) timeout: Duration,
}

/// Reads the file (when it changed) and Redis again.
pub(crate) struct Refresher {
    pub(crate) store: Arc<Store>,
    pub(crate) file: Option<(PathBuf, Stamp)>,
    pub(crate) shared: Option<Shared>,
    /// Values in Redis last refused, so each is logged once.
    pub(crate) refused: HashMap<String, String>,
}

impl Refresher {
    pub(crate) async fn refresh(&mut self) {
        self.refresh_file();
        self.refresh_shared().await;
    }

    fn refresh_file(&mut self) {
        let Some((path, seen)) = &mut self.file else {
            return;
        };
        let stamp = stamp(path);
        if stamp == *seen {
            return;
        }
        match read_file(path, self.store.flags) {
            Ok(splits) => {
                self.store.set_file(&splits);
                tracing::info!(file = %path.display(), "flags file read");
                *seen = stamp;
            }
            Err(error) => {
                refresh_error("invalid");
                tracing::warn!(%error, "flags file refused; the splits read before stay");
                // Not read again until it changes.
                *seen = stamp;
            }
        }
    }

    async fn refresh_shared(&mut self) {
        let Some(shared) = &self.shared else {
            return;
        };
        let mut conn = shared.conn.clone();
        let read = tokio::time::timeout(
            shared.timeout,
            redis::cmd("HGETALL")
                .arg(&shared.key)
                .query_async::<HashMap<String, String>>(&mut conn),
        )
        .await;
        let values = match read {
            Ok(Ok(values)) => values,
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {:?}", shared.timeout),
                };
                refresh_error("unavailable");
                let mut status = self.store.status.lock();
                if status.last_error.is_none() {
                    tracing::warn!(%error, "flags cannot be read from Redis; the last values read stay in force");
                }
                status.last_error = Some(error);
                return;
            }
        };
        for flag in self.store.flags {
            let split = match values.get(flag.key) {
                None => {
                    self.refused.remove(flag.key);
                    None
                }
                Some(raw) => match Split::parse(flag, raw) {
                    Ok(split) => {
                        self.refused.remove(flag.key);
                        Some(split)
                    }
                    Err(error) => {
                        refresh_error("invalid");
                        if self.refused.get(flag.key) != Some(raw) {
                            tracing::warn!(flag = flag.key, %error, "flag value in Redis refused; the last value stays");
                            self.refused.insert(flag.key.to_owned(), raw.clone());
                        }
                        continue;
                    }
                },
            };
            // Each change is logged once, on every replica: when a
            // rollout step took effect is in the logs.
            let shown = split.as_ref().map(|s| s.display(flag).to_string());
            if self.store.set_redis(flag.key, split) {
                match shown {
                    Some(split) => {
                        tracing::info!(flag = flag.key, %split, "flag split from Redis in force")
                    }
                    None => tracing::info!(
                        flag = flag.key,
                        "flag split removed from Redis; the other sources apply"
                    ),
                }
            }
        }
        let mut status = self.store.status.lock();
        if status.last_error.take().is_some() {
            tracing::info!("flags are read from Redis again");
        }
        status.last_ok = Some(SystemTime::now());
    }
}
