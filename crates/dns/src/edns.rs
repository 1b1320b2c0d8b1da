//! EDNS in answers (RFC 6891, RFC 3225, RFC 8906): hickory's catalog negotiates the
//! version (BADVERS for a version above 0), ignores unknown options and flags and keeps
//! them out of its answer; this layer adds what its build without DNSSEC leaves out.
//!
//! - **The DO bit is copied into the answer** (RFC 3225 §3: "the DO bit of the query MUST
//!   be copied in the response"). Without the DNSSEC feature hickory drops it; the feature
//!   would bring DNSSEC signing and a resolver into the build for one bit.
//! - **The answer advertises this server's own UDP payload size** (RFC 6891 §6.2.5: the
//!   requestor's size is not the responder's), 1232 bytes as the DNS flag day 2020 chose,
//!   instead of echoing the requestor's.

use hickory_net::runtime::Time;
use hickory_net::NetError;
use hickory_proto::op::Edns;
use hickory_proto::rr::Record;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;

/// The UDP payload size this server takes and advertises.
pub const UDP_PAYLOAD: u16 = 1232;

/// The EDNS record of an answer to a query that carried `query` (`None`: no EDNS, so the
/// answer carries none). Pure: the rules above, on hickory's types.
pub fn answer_edns(query: Option<&Edns>, drafted: Option<&Edns>) -> Option<Edns> {
    let query = query?;
    let mut edns = drafted.cloned().unwrap_or_else(Edns::new);
    edns.set_dnssec_ok(query.flags().dnssec_ok);
    edns.flags_mut().z = 0;
    edns.set_max_payload(UDP_PAYLOAD);
    Some(edns)
}

/// Wraps a request handler (the zone catalog) so every answer's EDNS follows the rules.
pub struct EdnsAnswers<H> {
    pub inner: H,
}

#[async_trait::async_trait]
impl<H: RequestHandler> RequestHandler for EdnsAnswers<H> {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let fixer = FixEdns {
            inner: response_handle,
            query: request.edns.clone(),
        };
        self.inner.handle_request::<_, T>(request, fixer).await
    }
}

#[derive(Clone)]
struct FixEdns<R> {
    inner: R,
    query: Option<Edns>,
}

#[async_trait::async_trait]
impl<R: ResponseHandler> ResponseHandler for FixEdns<R> {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let Some(edns) = answer_edns(self.query.as_ref(), response.edns()) else {
            return self.inner.send_response(response).await;
        };
        let mut response = response;
        response.set_edns(&edns);
        self.inner.send_response(response).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn do_bit_is_copied_and_unknown_flags_cleared() {
        let mut query = Edns::new();
        query.set_dnssec_ok(true).set_max_payload(4096);
        query.flags_mut().z = 0x0040;
        let answer = answer_edns(Some(&query), Some(&Edns::new())).unwrap();
        assert!(answer.flags().dnssec_ok);
        assert_eq!(answer.flags().z, 0);
        assert_eq!(answer.max_payload(), UDP_PAYLOAD);

        query.set_dnssec_ok(false);
        assert!(!answer_edns(Some(&query), None).unwrap().flags().dnssec_ok);
    }

    #[test]
    fn no_edns_in_the_query_means_none_in_the_answer() {
        assert_eq!(answer_edns(None, Some(&Edns::new())), None);
    }
}
