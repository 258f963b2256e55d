//! Per-identity limits: requests per second (a token bucket, refused with HTTP 429 and
//! `Retry-After`) and requests waiting for an answer at once (refused with a JSON-RPC error).
//! The numbers come from the flags, or from the identity's policy rules.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use super::Identity;
use super::policy::Policy;

struct Bucket {
    tokens: f64,
    at: Instant,
}

pub struct Limits {
    /// Requests per second, and at once, unless the policy says otherwise (0: no limit).
    pub rate: u32,
    pub concurrency: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
    in_flight: Mutex<HashMap<String, u32>>,
}

fn key(id: &Identity) -> String {
    format!("{}:{}", id.via, id.name)
}

impl Limits {
    pub fn new(rate: u32, concurrency: u32) -> Limits {
        Limits {
            rate,
            concurrency,
            buckets: Default::default(),
            in_flight: Default::default(),
        }
    }

    /// Take one request from `id`'s bucket; `Err(seconds to wait)` when it is empty. The
    /// bucket holds one second's worth.
    pub fn rate(&self, id: &Identity, policy: &Policy) -> Result<(), u64> {
        let rate = policy.limits(id).rate.unwrap_or(self.rate);
        if rate == 0 {
            return Ok(());
        }
        let Ok(mut b) = self.buckets.lock() else {
            return Ok(());
        };
        if b.len() > 100_000 {
            b.retain(|_, x| x.at.elapsed().as_secs() < 60);
        }
        let now = Instant::now();
        let bucket = b.entry(key(id)).or_insert(Bucket {
            tokens: rate as f64,
            at: now,
        });
        let r = rate as f64;
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * r).min(r);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / r).ceil().max(1.0) as u64)
        }
    }

    /// Count a request of `id` that waits for its answer; `Err(limit)` when it has too many.
    pub fn start(&self, id: &Identity, policy: &Policy) -> Result<(), u32> {
        let limit = policy.limits(id).concurrency.unwrap_or(self.concurrency);
        let Ok(mut f) = self.in_flight.lock() else {
            return Ok(());
        };
        let n = f.entry(key(id)).or_insert(0);
        if limit > 0 && *n >= limit {
            return Err(limit);
        }
        *n += 1;
        Ok(())
    }

    pub fn end(&self, id: &Identity) {
        if let Ok(mut f) = self.in_flight.lock() {
            let k = key(id);
            if let Some(n) = f.get_mut(&k) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    f.remove(&k);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Identity {
        Identity {
            name: "a".into(),
            via: "key",
            sub: None,
            client_id: None,
            scopes: vec![],
            groups: vec![],
        }
    }

    #[test]
    fn buckets_and_counts() {
        let l = Limits::new(3, 2);
        let p = Policy::default();
        assert!(l.rate(&id(), &p).is_ok());
        assert!(l.rate(&id(), &p).is_ok());
        assert!(l.rate(&id(), &p).is_ok());
        assert_eq!(l.rate(&id(), &p), Err(1));
        assert!(l.start(&id(), &p).is_ok());
        assert!(l.start(&id(), &p).is_ok());
        assert_eq!(l.start(&id(), &p), Err(2));
        l.end(&id());
        assert!(l.start(&id(), &p).is_ok());
    }
}
