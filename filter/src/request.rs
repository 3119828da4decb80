//! One HTTP request: authenticate its virtual key against the policy in shared data.

use crate::metrics::Metrics;
use crate::{host, shared};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;
use warden_policy::keys::key_headers;
use warden_policy::{Denial, FilterSettings, PolicyHealth, admit};

/// The header that tells the upstream which virtual key a request was admitted as. Trusted
/// because every client-sent `x-warden-*` header is removed first.
pub const KEY_ID_HEADER: &str = "x-warden-vk-id";

pub struct WardenRequest {
    settings: Option<Rc<FilterSettings>>,
    metrics: Rc<Metrics>,
}

impl WardenRequest {
    pub fn new(settings: Option<Rc<FilterSettings>>, metrics: Rc<Metrics>) -> WardenRequest {
        WardenRequest { settings, metrics }
    }

    fn deny(&self, denial: &Denial) -> Action {
        host::increment(self.metrics.denied, 1);
        host::send_local_reply(denial.status(), &[("content-type", "application/json")], &denial.body());
        // Envoy sends the local reply once this callback returns.
        Action::Pause
    }
}

impl Context for WardenRequest {}

impl HttpContext for WardenRequest {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let headers = host::request_headers();
        #[cfg(feature = "crash-trigger")]
        if headers.iter().any(|(name, _)| name == "x-warden-test-crash") {
            crash_if_leader();
            host::send_local_reply(409, &[], b"this VM does not hold the policy stream");
            return Action::Pause;
        }
        for (name, _) in headers.iter().filter(|(name, _)| name.starts_with("x-warden-")) {
            host::remove_request_header(name);
        }
        let Some(settings) = &self.settings else {
            return self.deny(&Denial::PolicyMissing);
        };
        let health = PolicyHealth { bound_ms: settings.staleness_bound_ms };
        let status = shared::sync_status();
        let pairs = headers.iter().map(|(name, value)| (name.as_str(), value.as_slice()));
        match admit(pairs.clone(), health, status.as_ref(), shared::virtual_key, host::now_ms()) {
            Ok(admitted) => {
                // Virtual keys are Warden's credentials, not the provider's: they stay here.
                for name in key_headers(pairs) {
                    host::remove_request_header(name);
                }
                host::set_request_header(KEY_ID_HEADER, &admitted.record.id);
                host::increment(self.metrics.admitted, 1);
                Action::Continue
            }
            Err(denial) => self.deny(&denial),
        }
    }
}

/// Test-only: kill this VM if it holds the policy stream, to prove the stream heals.
#[cfg(feature = "crash-trigger")]
#[allow(clippy::panic, reason = "the point of this test-only trigger is to crash the VM")]
fn crash_if_leader() {
    if crate::root::vm_holds_stream() {
        panic!("warden: crash requested by x-warden-test-crash");
    }
}
