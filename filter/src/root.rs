//! The root context: one per VM and plugin configuration. It holds the compiled settings, hands
//! them to every request, and, when this VM is the leader, keeps the policy stream open.

use crate::leases::Leases;
use crate::ledger::Reporter;
use crate::metrics::Metrics;
use crate::policy_stream::PolicyStream;
use crate::request::WardenRequest;
use crate::shared::SharedCounters;
use crate::{host, leader, ledger, shared};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::cell::Cell;
use std::rc::Rc;
use warden_policy::FilterSettings;
use warden_policy::blocks;

thread_local! {
    // One VM runs on one thread, so these are per VM.
    static SERVED_REQUESTS: Cell<bool> = const { Cell::new(false) };
}

pub struct WardenRoot {
    /// Assigned on the first tick: the canary VM that runs `on_configure` first never ticks.
    id: Option<String>,
    /// Whether this root won the lease on its last tick.
    leads: bool,
    settings: Option<Rc<FilterSettings>>,
    metrics: Rc<Metrics>,
    stream: PolicyStream,
    reporter: Reporter,
    leases: Leases,
}

impl WardenRoot {
    pub fn new() -> WardenRoot {
        WardenRoot {
            id: None,
            leads: false,
            settings: None,
            metrics: Rc::new(Metrics::define()),
            stream: PolicyStream::default(),
            reporter: Reporter::default(),
            leases: Leases::default(),
        }
    }

    /// Sends the policy acknowledgements held, unless they wait for leases still being asked
    /// for: an acknowledged change is one every worker can enforce.
    fn release_acks(&mut self, now_ms: u64) {
        if !self.stream.acks_wait_for_leases() || !self.leases.busy() {
            self.stream.send_held_acks(now_ms);
        }
    }
}

impl Context for WardenRoot {
    fn on_grpc_stream_message(&mut self, token_id: u32, message_size: usize) {
        if self.stream.owns(token_id) {
            let now = host::now_ms();
            let needs_leases = self.stream.on_message(message_size, now, &self.metrics);
            // New or changed limits get their leases now rather than at the next tick, and the
            // change is acknowledged once they are granted.
            if needs_leases && let Some(settings) = &self.settings {
                self.leases.tick(&settings.control_plane_cluster, now, &self.metrics);
            }
            self.release_acks(now);
        }
    }

    fn on_grpc_stream_close(&mut self, token_id: u32, status_code: u32) {
        if self.stream.owns(token_id) {
            self.stream.on_close(status_code, host::now_ms());
        }
    }

    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        if self.leases.owns(token_id) {
            let now = host::now_ms();
            let retick = self.leases.on_response(status_code, response_size, &self.metrics);
            if retick && let Some(settings) = &self.settings {
                self.leases.tick(&settings.control_plane_cluster, now, &self.metrics);
            }
            self.release_acks(now);
        } else if self.reporter.owns(token_id)
            && let Some(settings) = &self.settings
        {
            self.reporter.on_response(status_code, response_size, &settings.control_plane_cluster, &self.metrics);
        }
    }

    fn on_done(&mut self) -> bool {
        self.metrics.flush();
        host::increment(self.metrics.usage_dropped, ledger::record_anonymous(host::now_ms(), true));
        host::increment(self.metrics.usage_dropped, ledger::enqueue_held());
        blocks::give_back_all(&SharedCounters);
        self.stream.stop();
        if let Some(id) = &self.id {
            leader::release(id);
        }
        leader::set_holds_stream(false);
        true
    }
}

impl RootContext for WardenRoot {
    fn on_vm_start(&mut self, _: usize) -> bool {
        log::info!("warden filter {} starting", env!("CARGO_PKG_VERSION"));
        true
    }

    fn on_configure(&mut self, _: usize) -> bool {
        let raw = host::plugin_configuration().unwrap_or_default();
        let settings = match FilterSettings::parse(&raw) {
            Ok(s) => s,
            Err(e) => {
                // Refusing makes Envoy NACK this configuration and keep the previous one.
                log::error!("warden: {e}");
                return false;
            }
        };
        if let Err(e) = host::set_tick_period(settings.tick_ms) {
            log::error!("warden: cannot set the tick period: {e:?}");
            return false;
        }
        self.settings = Some(Rc::new(settings));
        true
    }

    fn on_tick(&mut self) {
        let Some(settings) = self.settings.clone() else {
            return;
        };
        let now = host::now_ms();
        self.metrics.flush();
        host::increment(self.metrics.usage_dropped, ledger::record_anonymous(now, false));
        host::increment(self.metrics.usage_dropped, ledger::enqueue_held());
        // Capacity idles in a block for at most a tick.
        blocks::give_back_all(&SharedCounters);
        if self.id.is_none() {
            self.id = leader::allocate_id();
        }
        let Some(id) = &self.id else { return };
        let served = SERVED_REQUESTS.with(Cell::get);
        let leads = leader::hold(id, served, settings.leader_lease_ms, now);
        if leads != self.leads {
            log::info!("warden: {id} {} the policy stream", if leads { "now holds" } else { "gave up" });
            self.leads = leads;
        }
        if leads {
            self.stream.ensure_open(&settings.control_plane_cluster, now, &self.metrics);
            self.reporter.flush(&settings.control_plane_cluster, &self.metrics);
            self.leases.tick(&settings.control_plane_cluster, now, &self.metrics);
            self.release_acks(now);
        } else {
            self.stream.stop();
            self.reporter.stop();
            self.leases.stop();
        }
        leader::set_holds_stream(self.stream.is_open());
        if let Some(status) = shared::sync_status(now) {
            host::record(self.metrics.policy_version, status.version.parse().unwrap_or(0));
            host::record(self.metrics.policy_age_ms, now.saturating_sub(status.heard_at_ms));
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        SERVED_REQUESTS.with(|s| s.set(true));
        // A request before any configuration cannot happen in Envoy (the canary configures
        // first); should it, an empty settings value still denies with a clear 503.
        let settings = self.settings.clone();
        Some(Box::new(WardenRequest::new(settings, Rc::clone(&self.metrics))))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
