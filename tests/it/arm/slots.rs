//! Deployment slots in the in-test Resource Manager ([`super::fake::FakeArm`]): the swap
//! of a slot into production, as Microsoft's REST reference "Web Apps - Swap Slot Slot"
//! documents it (<https://learn.microsoft.com/en-us/rest/api/appservice/web-apps/swap-slot-slot>):
//!
//! * `POST /subscriptions/{id}/resourceGroups/{rg}/providers/Microsoft.Web/sites/{name}/
//!   slots/{slot}/slotsswap?api-version=...`, the API version the fake serves for
//!   `Microsoft.Web` (2023-12-01; anything else is refused);
//! * a `CsmSlotEntity` body whose `targetSlot` (string) and `preserveVnet` (boolean) are
//!   both required: a missing or mistyped one is a 400, as is a target this fake does
//!   not model (only `production`);
//! * an unknown app or slot is a 404;
//! * the answer is 202 Accepted with `Location` and `Retry-After` (the long-running
//!   operation of the reference's responses table); the operation answers 202 once
//!   more, then performs the swap and answers 200. What the swap exchanges is the
//!   caller's `on_swap` (for App Service, `kudu::fake::FakeKudu::swapper`: the two sites'
//!   deployed content and Kudu deployment records change places, as App Service's "Set
//!   up staging environments" describes the swap: the routing rules of the two slots
//!   switch, so each slot's host names reach the other's site; swapping again puts
//!   the "last known good site" back).

use std::sync::Arc;

use super::fake::{Reply, SUBSCRIPTION, Seen, error, respond};

const WEB_API_VERSION: &str = "2023-12-01";

/// A slot that can be swapped; `on_swap` exchanges its content with production's.
pub struct SwapSlot {
    group: String,
    app: String,
    slot: String,
    on_swap: Arc<dyn Fn() + Send + Sync>,
}

pub fn swap_slot(
    group: &str,
    app: &str,
    slot: &str,
    on_swap: impl Fn() + Send + Sync + 'static,
) -> SwapSlot {
    SwapSlot {
        group: group.into(),
        app: app.into(),
        slot: slot.into(),
        on_swap: Arc::new(on_swap),
    }
}

struct Operation {
    id: String,
    slot: usize,
    polls: u32,
}

#[derive(Default)]
pub struct Slots {
    slots: Vec<SwapSlot>,
    operations: Vec<Operation>,
}

impl Slots {
    pub fn add(&mut self, slot: SwapSlot) {
        self.slots.push(slot);
    }
}

/// The answer to a slot request, or `None` when `seen` is not one (the fake's own
/// routes then answer it).
pub fn route(slots: &mut Slots, base: &str, seen: &Seen) -> Option<Reply> {
    let rest = seen
        .path
        .strip_prefix(&format!("/subscriptions/{SUBSCRIPTION}/"))?;
    let segments: Vec<String> = rest.split('/').map(str::to_ascii_lowercase).collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (seen.method.as_str(), segments.as_slice()) {
        (
            "POST",
            [
                "resourcegroups",
                rg,
                "providers",
                "microsoft.web",
                "sites",
                name,
                "slots",
                slot,
                "slotsswap",
            ],
        ) => Some(swap(slots, base, seen, rg, name, slot)),
        (
            "GET",
            [
                "providers",
                "microsoft.web",
                "locations",
                _,
                "operationresults",
                id,
            ],
        ) if slots.operations.iter().any(|o| o.id == *id) => Some(poll(slots, id)),
        _ => None,
    }
}

fn swap(slots: &mut Slots, base: &str, seen: &Seen, rg: &str, name: &str, slot: &str) -> Reply {
    if seen.query.get("api-version").map(String::as_str) != Some(WEB_API_VERSION) {
        return error(
            400,
            "InvalidApiVersionParameter",
            "The api-version is not supported for Microsoft.Web/sites/slots/slotsswap.",
        );
    }
    let body: serde_json::Value = match serde_json::from_str(&seen.body) {
        Ok(v) => v,
        Err(_) => {
            return error(
                400,
                "BadRequest",
                "The request body is not a CsmSlotEntity.",
            );
        }
    };
    let Some(target) = body.get("targetSlot").and_then(|t| t.as_str()) else {
        return error(400, "BadRequest", "The parameter targetSlot is required.");
    };
    if !body.get("preserveVnet").is_some_and(|v| v.is_boolean()) {
        return error(400, "BadRequest", "The parameter preserveVnet is required.");
    }
    if !target.eq_ignore_ascii_case("production") {
        return error(
            400,
            "BadRequest",
            "This fake swaps slots with production only.",
        );
    }
    let Some(index) = slots.slots.iter().position(|s| {
        s.group.eq_ignore_ascii_case(rg)
            && s.app.eq_ignore_ascii_case(name)
            && s.slot.eq_ignore_ascii_case(slot)
    }) else {
        return error(
            404,
            "ResourceNotFound",
            &format!(
                "The Resource 'Microsoft.Web/sites/{name}/slots/{slot}' under resource group '{rg}' was not found."
            ),
        );
    };
    let id = format!("swap-{}-{}", slot, slots.operations.len() + 1);
    slots.operations.push(Operation {
        id: id.clone(),
        slot: index,
        polls: 0,
    });
    let location = format!(
        "{base}/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Web/locations/eastus/operationResults/{id}?api-version={WEB_API_VERSION}"
    );
    respond(
        202,
        &[("Location", location.as_str()), ("Retry-After", "1")],
        String::new(),
    )
}

fn poll(slots: &mut Slots, id: &str) -> Reply {
    let Some(op) = slots.operations.iter_mut().find(|o| o.id == id) else {
        return error(404, "OperationNotFound", "No such operation.");
    };
    op.polls += 1;
    match op.polls {
        1 => respond(202, &[("Retry-After", "1")], String::new()),
        2 => {
            (slots.slots[op.slot].on_swap)();
            respond(200, &[], String::new())
        }
        _ => respond(200, &[], String::new()),
    }
}
