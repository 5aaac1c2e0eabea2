//! Where a sync's objects may come from: the servers (primary first) and the mirrors,
//! each a [`Client`], and the ledger of which source served what ([`ServedBy`]).
//!
//! A mirror is any static file server holding the protocol's objects under their
//! protocol paths without the leading `/` (`schema::protocol::mirror_key`): a
//! mirror's base URL plus a protocol path is the object's URL, so one [`Client`]
//! speaks to both kinds; a mirror's transport carries no token. Every object is
//! verified above the transport, whoever served it (see [`crate::sync`]).

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::client::{Client, ClientError, Fetched};
use crate::config::Config;

/// The servers and mirrors of one puller, and which server answered last.
pub struct Sources {
    servers: Vec<Client>,
    mirrors: Vec<Client>,
    /// Index in `servers` of the server that answered the last head; `None` when
    /// none did (the head then came from a mirror, or from nowhere).
    in_use: Mutex<Option<usize>>,
}

impl Sources {
    /// The real clients: one per `config.servers` and one per `config.mirrors`.
    pub fn new(config: &Config) -> Result<Sources, ClientError> {
        let primary = Client::new(config)?;
        Sources::for_client(config, primary)
    }

    /// `client` stands for the first server (a test's in-memory one, or the daemon's);
    /// the other servers and the mirrors get real clients from `config`.
    pub fn for_client(config: &Config, client: Client) -> Result<Sources, ClientError> {
        let mut servers = vec![client];
        for url in config.servers.iter().skip(1) {
            let other = config
                .clone()
                .with_server(url)
                .map_err(|e| ClientError::Build(e.to_string()))?;
            servers.push(Client::new(&other)?);
        }
        let mirrors = config
            .mirrors
            .iter()
            .map(|url| Client::mirror(config, url))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Sources::with_clients(servers, mirrors))
    }

    /// Given clients, servers primary first. `servers` must not be empty.
    pub fn with_clients(servers: Vec<Client>, mirrors: Vec<Client>) -> Sources {
        assert!(!servers.is_empty(), "a puller has at least one server");
        Sources {
            servers,
            mirrors,
            in_use: Mutex::new(None),
        }
    }

    /// One server and no mirror.
    pub fn single(client: Client) -> Sources {
        Sources::with_clients(vec![client], Vec::new())
    }

    pub fn servers(&self) -> &[Client] {
        &self.servers
    }

    pub fn mirrors(&self) -> &[Client] {
        &self.mirrors
    }

    pub fn primary(&self) -> &Client {
        // `with_clients` refuses an empty list.
        &self.servers[0]
    }

    /// Index in [`Sources::servers`] of the server that answered the last head.
    pub fn in_use_index(&self) -> Option<usize> {
        *self.in_use.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The server that answered the last head, if one did.
    pub fn server_in_use(&self) -> Option<&Client> {
        self.in_use_index().and_then(|i| self.servers.get(i))
    }

    pub(crate) fn set_in_use(&self, index: Option<usize>) {
        *self.in_use.lock().unwrap_or_else(|p| p.into_inner()) = index;
    }

    /// Servers in the order a request that any of them can answer tries them: the one
    /// in use first (it answered last), then the others, primary first.
    pub fn servers_in_use_first(&self) -> Vec<&Client> {
        let first = self.in_use_index().unwrap_or(0);
        let mut out = vec![&self.servers[first.min(self.servers.len() - 1)]];
        out.extend(
            self.servers
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != first)
                .map(|(_, c)| c),
        );
        out
    }

    /// `POST`s a report to the first server that answers (see
    /// [`Sources::servers_in_use_first`]): a server that is down is skipped; any
    /// answer, a refusal included, ends the search. Returns who answered.
    pub async fn report(
        &self,
        player_id: &str,
        body: Vec<u8>,
    ) -> Result<(Client, Fetched<Vec<u8>>), ClientError> {
        let mut last_error = None;
        for server in self.servers_in_use_first() {
            match server.report(player_id, body.clone()).await {
                Ok(answer) => return Ok((server.clone(), answer)),
                Err(e) if e.is_network() => {
                    tracing::info!(server = server.base(), error = %e, "report: server down, trying the next");
                    last_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        // `servers` is never empty, so a network error was kept above.
        Err(last_error.unwrap_or_else(|| ClientError::Build("no server configured".into())))
    }
}

/// Most [`Refused`] entries one sync keeps (a mirror missing every media of a big
/// version would otherwise fill `state.sqlite`); the rest are only logged.
pub const MAX_REFUSED: usize = 32;

/// Which source served what in one sync: `last_sync.served_by` in `status --json`.
/// URLs are the sources' base URLs as configured. Field names are a CLI contract.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedBy {
    /// The source whose head the sync followed (`null` only in state written before
    /// this field existed).
    pub head: Option<String>,
    /// The source the new manifest and signature came from; `null` when the sync
    /// found nothing new.
    pub manifest: Option<String>,
    /// Media downloaded and accepted, per source, in the order sources first served.
    pub media: Vec<MediaServed>,
    /// Every source that failed or was refused on the way, with why (at most
    /// [`MAX_REFUSED`]).
    pub refused: Vec<Refused>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaServed {
    pub url: String,
    /// Media files this source brought, fully or the end of a resumed one.
    pub count: u64,
    /// Bytes received from it for those files.
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub url: String,
    pub error: String,
    /// True when the source sent something that failed a signature, hash, size or
    /// version check (the daemon reports it as `verify_failed`); absent when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub possible_attack: bool,
}

impl ServedBy {
    /// Notes that `url` failed with `error`, and logs it.
    pub fn refuse(&mut self, url: &str, error: &dyn std::fmt::Display) {
        self.note(url, error, false);
    }

    /// Notes that `url` sent an object that failed verification, and logs it.
    pub fn refuse_as_attack(&mut self, url: &str, error: &dyn std::fmt::Display) {
        self.note(url, error, true);
    }

    fn note(&mut self, url: &str, error: &dyn std::fmt::Display, possible_attack: bool) {
        tracing::warn!(source = url, error = %error, possible_attack, "source failed or refused: trying the next one");
        if self.refused.len() < MAX_REFUSED {
            self.refused.push(Refused {
                url: url.to_string(),
                error: error.to_string(),
                possible_attack,
            });
        }
    }

    /// The refusals that may be attacks.
    pub fn possible_attacks(&self) -> impl Iterator<Item = &Refused> {
        self.refused.iter().filter(|r| r.possible_attack)
    }

    /// Counts one media file of `bytes` received from `url`.
    pub fn served_media(&mut self, url: &str, bytes: u64) {
        match self.media.iter_mut().find(|m| m.url == url) {
            Some(m) => {
                m.count += 1;
                m.bytes += bytes;
            }
            None => self.media.push(MediaServed {
                url: url.to_string(),
                count: 1,
                bytes,
            }),
        }
    }
}

/// A [`ServedBy`] the parallel downloads of one sync write to.
#[derive(Debug, Clone, Default)]
pub struct Ledger(Arc<Mutex<ServedBy>>);

impl Ledger {
    pub fn new(served: ServedBy) -> Ledger {
        Ledger(Arc::new(Mutex::new(served)))
    }

    pub fn update<R>(&self, f: impl FnOnce(&mut ServedBy) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn snapshot(&self) -> ServedBy {
        self.update(|s| s.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_are_tallied_per_source_and_refusals_are_capped() {
        let mut s = ServedBy::default();
        s.served_media("https://m", 10);
        s.served_media("https://o", 5);
        s.served_media("https://m", 7);
        assert_eq!(
            s.media,
            [
                MediaServed {
                    url: "https://m".into(),
                    count: 2,
                    bytes: 17
                },
                MediaServed {
                    url: "https://o".into(),
                    count: 1,
                    bytes: 5
                },
            ]
        );
        for i in 0..MAX_REFUSED + 5 {
            s.refuse("https://m", &format!("no {i}"));
        }
        assert_eq!(s.refused.len(), MAX_REFUSED);
        let json = serde_json::to_value(&s).unwrap();
        for field in ["head", "manifest", "media", "refused"] {
            assert!(json.get(field).is_some(), "missing {field}: {json}");
        }
        assert_eq!(json["media"][0]["bytes"], 17);
    }
}
