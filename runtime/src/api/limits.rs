//! Admission bookkeeping the node keeps between requests: token lookups
//! cached briefly, failed authentications per address. A leaf, so the
//! shared state can hold them without importing the handlers.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Token lookups, cached briefly (misses too): a flood of bad tokens does
/// not become a flood of queries. A revocation through this node clears it;
/// other nodes see it within [`TOKEN_CACHE_TTL`].
pub struct TokenCache {
    entries: Mutex<HashMap<String, (Option<TokenRow>, Instant)>>,
}

/// A token's name, role and expiry (ms since the epoch).
type TokenRow = (String, String, Option<i64>);

pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(10);
const TOKEN_CACHE_MAX: usize = 10_000;

impl Default for TokenCache {
    fn default() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl TokenCache {
    pub(crate) fn get(&self, hash: &str) -> Option<Option<TokenRow>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(hash)
            .filter(|(_, at)| at.elapsed() < TOKEN_CACHE_TTL)
            .map(|(found, _)| found.clone())
    }

    pub(crate) fn put(&self, hash: &str, found: Option<TokenRow>) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= TOKEN_CACHE_MAX {
            entries.retain(|_, (_, at)| at.elapsed() < TOKEN_CACHE_TTL);
            if entries.len() >= TOKEN_CACHE_MAX {
                entries.clear();
            }
        }
        entries.insert(hash.to_owned(), (found, Instant::now()));
    }

    /// Forgets every cached lookup (after a revocation).
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// Failed authentications per client address: past the limit in a window,
/// the client gets 429 without a lookup until the window passes.
pub struct AuthFailures {
    per_minute: u32,
    seen: Mutex<HashMap<std::net::IpAddr, (u32, Instant)>>,
}

const AUTH_FAILURE_WINDOW: Duration = Duration::from_secs(60);

impl AuthFailures {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `client` may try to authenticate now.
    pub fn allowed(&self, client: std::net::IpAddr) -> bool {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.get(&client)
            .is_none_or(|(n, since)| *n < self.per_minute || since.elapsed() >= AUTH_FAILURE_WINDOW)
    }

    pub fn failed(&self, client: std::net::IpAddr) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() >= 100_000 {
            seen.retain(|_, (_, since)| since.elapsed() < AUTH_FAILURE_WINDOW);
        }
        let entry = seen.entry(client).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= AUTH_FAILURE_WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 = entry.0.saturating_add(1);
    }
}
