//! The service API's calls for many messages at once: `POST /api/send-batch`
//! (`{"items":[{"user":…,"payload":…},…]}`) and `POST /api/send-many`
//! (`{"users":[…],"payload":…}`). Same service token and limits as a single
//! send; the answer is 200 with one result per item (or user), in order,
//! each the JSON answer a single send would give with its `status` added:
//! `{"status":202,"queued_for":2}`, `{"status":202,"buffered":true}`,
//! `{"status":404,"error":"unknown user"}`, … A refused call (bad token, a
//! body that is not such an object, too many items, a body too large) gets
//! one typed error and sends nothing. A payload is any JSON value; its text
//! is delivered as it stands in the request.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use userlane_smol::{HttpRequest, HttpResponse, ServerHandle};

use super::api::Api;

#[derive(Deserialize)]
struct Batch<'a> {
    #[serde(borrow)]
    items: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct Item<'a> {
    user: String,
    #[serde(borrow)]
    payload: &'a RawValue,
}

#[derive(Deserialize)]
struct Many<'a> {
    users: Vec<Value>,
    #[serde(borrow)]
    payload: &'a RawValue,
}

fn refuse(status: u16, error: &str) -> HttpResponse {
    HttpResponse::json(status, &json!({ "error": error }))
}

fn item_error(status: u16, error: &str) -> Value {
    json!({ "status": status, "error": error })
}

impl Api {
    /// `POST /api/send-batch` (authorized).
    pub(super) async fn send_batch(
        &self,
        server: &ServerHandle,
        req: &HttpRequest,
    ) -> HttpResponse {
        if let Err(r) = self.batch_body(req) {
            return r;
        }
        let Ok(batch) = serde_json::from_slice::<Batch>(&req.body) else {
            return refuse(400, "send {\"items\": [{\"user\": …, \"payload\": …}, …]}");
        };
        if batch.items.len() > self.max_batch_items {
            return refuse(413, &format!("over {} items", self.max_batch_items));
        }
        let mut results = Vec::with_capacity(batch.items.len());
        for raw in batch.items {
            let result = match serde_json::from_str::<Item>(raw.get()) {
                Ok(item) => self.send_item(server, &item.user, item.payload).await,
                Err(_) => item_error(400, "an item is {\"user\": \"…\", \"payload\": …}"),
            };
            results.push(result);
        }
        HttpResponse::json(200, &json!({ "results": results }))
    }

    /// `POST /api/send-many` (authorized).
    pub(super) async fn send_many(&self, server: &ServerHandle, req: &HttpRequest) -> HttpResponse {
        if let Err(r) = self.batch_body(req) {
            return r;
        }
        let Ok(many) = serde_json::from_slice::<Many>(&req.body) else {
            return refuse(400, "send {\"users\": [\"…\", …], \"payload\": …}");
        };
        if many.users.len() > self.max_batch_items {
            return refuse(413, &format!("over {} users", self.max_batch_items));
        }
        let mut results = Vec::with_capacity(many.users.len());
        for user in &many.users {
            let result = match user.as_str() {
                Some(user) => self.send_item(server, user, many.payload).await,
                None => item_error(400, "a user id is a string"),
            };
            results.push(result);
        }
        HttpResponse::json(200, &json!({ "results": results }))
    }

    /// The body bound of a batch call.
    fn batch_body(&self, req: &HttpRequest) -> Result<(), HttpResponse> {
        if req.body.len() > self.max_batch_bytes {
            return Err(refuse(413, "body over the batch size limit"));
        }
        Ok(())
    }

    /// One item: the checks and the answer of a single send, with its status.
    async fn send_item(&self, server: &ServerHandle, user: &str, payload: &RawValue) -> Value {
        if user.is_empty() {
            return item_error(400, "bad user id");
        }
        let text = payload.get();
        if text.len() > self.max_message_bytes {
            return item_error(413, "payload over the message size limit");
        }
        let (status, mut answer) = self.deliver(server, user, text).await;
        if let Some(fields) = answer.as_object_mut() {
            fields.insert("status".into(), status.into());
        }
        answer
    }
}
