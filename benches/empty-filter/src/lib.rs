//! An HTTP filter that creates a context per request and lets it pass: what every proxy-wasm
//! filter pays before doing any work. Warden's overhead is measured against it.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

struct Root;
struct Pass;

impl Context for Root {}
impl RootContext for Root {
    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Pass))
    }
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
impl Context for Pass {}
impl HttpContext for Pass {}

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| Box::new(Root));
}}
