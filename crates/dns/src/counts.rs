//! Answers counted by response code, for the name server's monitoring agent.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use hickory_net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};

/// Answers by response code (`noerror`, `nxdomain`, `refused`, …), since the start.
#[derive(Debug, Default)]
pub struct AnswerCounts(Mutex<BTreeMap<String, u64>>);

impl AnswerCounts {
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// Wraps a request handler and counts what each answer said.
pub struct Counted<H> {
    pub inner: H,
    pub counts: Arc<AnswerCounts>,
}

#[async_trait::async_trait]
impl<H: RequestHandler> RequestHandler for Counted<H> {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let info = self
            .inner
            .handle_request::<_, T>(request, response_handle)
            .await;
        let code = format!("{:?}", info.response_code).to_ascii_lowercase();
        *self
            .counts
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(code)
            .or_default() += 1;
        info
    }
}
