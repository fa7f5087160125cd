//! Server-side sessions of the personal account, and their CSRF tokens.
//!
//! - A session id is 244 random bits from the OS (two v4 UUIDs), sent only as the cookie
//!   `__Host-oneclick_session` (`Secure; HttpOnly; SameSite=Strict; Path=/`: the `__Host-`
//!   prefix makes browsers refuse it unless it is secure, host-only and for `/`). The id is
//!   never logged; the store keys on a SHA-256 of it, so a heap dump does not hand out sessions.
//! - A fresh id at every sign-in (no fixation); sign-out deletes it. A session ends after
//!   `web.session_idle_secs` without a request, and after 12 hours whatever its use.
//! - Each session has its own CSRF token, a hidden field of every form that changes something,
//!   compared in constant time (SameSite=Strict is the first wall, the token the second).
//! - At most `web.max_sessions` sessions: a sign-in beyond drops the least recently used one.
//!   Sessions live in this process: behind several replicas, route a client to one (sticky) or
//!   it signs in again (docs/account.md).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use oneclick_actors::fault::Language;

/// Name of the session cookie.
pub const COOKIE: &str = "__Host-oneclick_session";
/// A session ends this long after sign-in, however active.
const ABSOLUTE: Duration = Duration::from_secs(12 * 3600);

/// A signed-in personal-account user. `Debug` redacts the CSRF token (a log line or panic
/// message that prints a session must not hand out its token).
#[derive(Clone)]
pub struct Session {
    pub merchant_id: i64,
    pub login: String,
    pub csrf: String,
    pub language: Language,
    /// The user signed in with a TOTP code: the pages ask a fresh code for every change (the
    /// engine checks whether one is needed whatever this says).
    pub totp: bool,
    created: Instant,
    seen: Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("merchant_id", &self.merchant_id)
            .field("login", &self.login)
            .field("csrf", &"[REDACTED]")
            .field("language", &self.language)
            .field("totp", &self.totp)
            .finish_non_exhaustive()
    }
}

/// The sessions of this process (bounded).
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
    idle: Duration,
    max: usize,
}

/// 244 bits from the OS generator, URL-safe.
pub fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn digest(id: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(id.as_bytes()).into()
}

/// Constant-time equality of two tokens.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Sessions {
    pub fn new(idle: Duration, max: usize) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            idle,
            max: max.max(1),
        }
    }

    /// Starts a session; returns its id (for the cookie only).
    pub fn start(&self, merchant_id: i64, login: &str, language: Language, totp: bool) -> String {
        let id = random_token();
        let now = Instant::now();
        let session = Session {
            merchant_id,
            login: login.to_string(),
            csrf: random_token(),
            language,
            totp,
            created: now,
            seen: now,
        };
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, s| self.alive(s, now));
        if map.len() >= self.max {
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.seen).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(digest(&id), session);
        id
    }

    fn alive(&self, s: &Session, now: Instant) -> bool {
        now.duration_since(s.seen) < self.idle && now.duration_since(s.created) < ABSOLUTE
    }

    /// The live session of `id`, marked as used now.
    pub fn get(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let key = digest(id);
        let alive = map.get(&key).is_some_and(|s| self.alive(s, now));
        if !alive {
            map.remove(&key);
            return None;
        }
        map.get_mut(&key).map(|s| {
            s.seen = now;
            s.clone()
        })
    }

    /// Changes the language of a session.
    pub fn set_language(&self, id: &str, language: Language) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get_mut(&digest(id)) {
            s.language = language;
        }
    }

    pub fn end(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&digest(id));
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_id_only_and_ends_on_sign_out() {
        let sessions = Sessions::new(Duration::from_secs(60), 10);
        let id = sessions.start(1, "anna", Language::En, false);
        assert_eq!(id.len(), 64);
        assert_eq!(sessions.get(&id).map(|s| s.merchant_id), Some(1));
        assert!(sessions.get(&random_token()).is_none());
        sessions.end(&id);
        assert!(sessions.get(&id).is_none());
    }

    #[test]
    fn idle_sessions_expire_and_the_store_is_bounded() {
        let sessions = Sessions::new(Duration::from_millis(1), 10);
        let id = sessions.start(1, "anna", Language::En, false);
        std::thread::sleep(Duration::from_millis(5));
        assert!(sessions.get(&id).is_none(), "idle session must expire");
        let sessions = Sessions::new(Duration::from_secs(60), 2);
        let first = sessions.start(1, "a", Language::En, false);
        std::thread::sleep(Duration::from_millis(2));
        let _second = sessions.start(1, "b", Language::En, false);
        let _third = sessions.start(1, "c", Language::En, false);
        assert_eq!(sessions.len(), 2);
        assert!(
            sessions.get(&first).is_none(),
            "the least recently used is dropped"
        );
    }

    #[test]
    fn a_session_debug_shows_no_csrf_token() {
        let sessions = Sessions::new(Duration::from_secs(60), 10);
        let id = sessions.start(1, "anna", Language::En, false);
        let session = sessions.get(&id).unwrap_or_else(|| unreachable!());
        let printed = format!("{session:?} {session:#?}");
        assert!(!printed.contains(&session.csrf), "{printed}");
        assert!(printed.contains("[REDACTED]") && printed.contains("anna"));
    }

    #[test]
    fn tokens_compare_in_full() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
    }
}
