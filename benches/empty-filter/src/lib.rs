//! An HTTP filter that creates a context per request and lets it pass: what every proxy-wasm
//! filter pays before doing any work. Warden's overhead is measured against it.
//!
//! Its plugin configuration may name one crossing to make per request, `<recipe> [n]`, so that
//! `make bench` can price each crossing Warden's hot path makes on this machine:
//!
//! | recipe | per request |
//! |---|---|
//! | `shared_reads N` | N shared-data reads (a 64-byte value) |
//! | `header_writes N` | N request-header writes |
//! | `body_pause` | the request headers paused until the body is buffered whole |
//! | `answer_pause` | the answer's headers paused until its body is buffered whole |
//! | `clear_route_cache` | the route chosen again |
//! | `enqueue` | one shared-queue enqueue, drained by the VM that registered the queue |
//! | `warden_shell` | what Warden's own Envoy configuration needs of a filter, and nothing else: the request held until its body is buffered, then routed by setting `x-warden-cluster` to the request's `x-bench-cluster` |
//!
//! A configuration that is a JSON object is Warden's filter settings: `warden serve
//! --filter-wasm <this>` serves this filter in Warden's place, and it acts as `warden_shell`. That
//! prices Warden's Envoy configuration (per-key provider clusters, the credential injector, the
//! route chosen by header, the body buffered) apart from the filter's own work.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType};

#[derive(Clone, Copy, Default)]
enum Recipe {
    #[default]
    Pass,
    SharedReads(u32),
    HeaderWrites(u32),
    BodyPause,
    AnswerPause,
    ClearRouteCache,
    Enqueue,
    WardenShell,
}

impl Recipe {
    fn parse(text: &str) -> Recipe {
        let mut words = text.split_whitespace();
        let n = |w: Option<&str>| w.and_then(|n| n.parse().ok()).unwrap_or(1);
        match words.next() {
            Some("shared_reads") => Recipe::SharedReads(n(words.next())),
            Some("header_writes") => Recipe::HeaderWrites(n(words.next())),
            Some("body_pause") => Recipe::BodyPause,
            Some("answer_pause") => Recipe::AnswerPause,
            Some("clear_route_cache") => Recipe::ClearRouteCache,
            Some("enqueue") => Recipe::Enqueue,
            Some("warden_shell") => Recipe::WardenShell,
            Some(word) if word.starts_with('{') => Recipe::WardenShell,
            _ => Recipe::Pass,
        }
    }
}

const QUEUE: &str = "bench";
const SHARED_KEY: &str = "bench:value";

#[derive(Default)]
struct Root {
    recipe: Recipe,
    queue: Option<u32>,
}

struct Pass {
    recipe: Recipe,
    queue: Option<u32>,
}

impl Context for Root {}
impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let config = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX).ok().flatten();
        self.recipe = Recipe::parse(&String::from_utf8_lossy(&config.unwrap_or_default()));
        match self.recipe {
            Recipe::SharedReads(_) => {
                let _ = hostcalls::set_shared_data(SHARED_KEY, Some(&[b'x'; 64]), None);
            }
            // Every VM registers the queue; the last one drains it, as Warden's leader does.
            Recipe::Enqueue => self.queue = hostcalls::register_shared_queue(QUEUE).ok(),
            _ => {}
        }
        true
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        while let Ok(Some(_)) = hostcalls::dequeue_shared_queue(queue_id) {}
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Pass { recipe: self.recipe, queue: self.queue }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl Context for Pass {}
impl HttpContext for Pass {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        match self.recipe {
            Recipe::SharedReads(n) => {
                for _ in 0..n {
                    let _ = hostcalls::get_shared_data(SHARED_KEY);
                }
            }
            Recipe::HeaderWrites(n) => {
                for i in 0..n {
                    let _ = hostcalls::set_map_value(
                        proxy_wasm::types::MapType::HttpRequestHeaders,
                        &format!("x-bench-{i}"),
                        Some("1"),
                    );
                }
            }
            Recipe::BodyPause | Recipe::WardenShell if !end_of_stream => return Action::Pause,
            Recipe::ClearRouteCache => {
                let _ = hostcalls::call_foreign_function("clear_route_cache", None);
            }
            Recipe::Enqueue => {
                if let Some(queue) = self.queue {
                    let _ = hostcalls::enqueue_shared_queue(queue, Some(b"usage record"));
                }
            }
            _ => {}
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, _: usize, end_of_stream: bool) -> Action {
        match self.recipe {
            Recipe::BodyPause | Recipe::WardenShell if !end_of_stream => Action::Pause,
            Recipe::WardenShell => {
                let request = proxy_wasm::types::MapType::HttpRequestHeaders;
                if let Ok(Some(cluster)) = hostcalls::get_map_value(request, "x-bench-cluster") {
                    let _ = hostcalls::set_map_value(request, "x-warden-cluster", Some(&cluster));
                }
                Action::Continue
            }
            _ => Action::Continue,
        }
    }

    fn on_http_response_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        match self.recipe {
            Recipe::AnswerPause if !end_of_stream => Action::Pause,
            _ => Action::Continue,
        }
    }

    fn on_http_response_body(&mut self, _: usize, end_of_stream: bool) -> Action {
        match self.recipe {
            Recipe::AnswerPause if !end_of_stream => Action::Pause,
            _ => Action::Continue,
        }
    }
}

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| Box::<Root>::default());
}}
