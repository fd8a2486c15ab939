//! Deployment slots: the swap of a staging slot into production, for the blue-green
//! deploys of `deploy::slot`.
//!
//! Microsoft's REST reference, "Web Apps - Swap Slot Slot"
//! (<https://learn.microsoft.com/en-us/rest/api/appservice/web-apps/swap-slot-slot>):
//! `POST /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/
//! Microsoft.Web/sites/{name}/slots/{slot}/slotsswap?api-version=...` with a
//! `CsmSlotEntity` body, `targetSlot` and `preserveVnet` both required; the answer is
//! 200 (done) or 202 Accepted with `Location` and `Retry-After`, a long-running
//! operation followed the way `arm.rs` follows every one (`Azure-AsyncOperation` when
//! given, else `Location` until it stops answering 202). App Service's own guide ("Set
//! up staging environments", <https://learn.microsoft.com/en-us/azure/app-service/deploy-staging-slots>)
//! describes what the swap does: the slot's content and slot-specific settings change
//! places with production's, after the slot's instances are warmed up, so swapping the
//! same slot again puts the previous production back.

use std::time::Duration;

use reqwest::{Method, StatusCode};

use super::{Arm, WEB_API_VERSION, is_subscription_not_found};
use crate::error::{Error, Result};

/// The role a refused swap needs (the `Microsoft.Web/sites/slots/slotsswap/action`).
const SWAP_PERMISSION: &str = "the identity needs to swap the app's slots, e.g. the Website \
     Contributor role on the app";

/// How long a swap may take (App Service warms the slot's instances first).
const SWAP_TIMEOUT: Duration = Duration::from_secs(15 * 60);

impl Arm {
    /// Swap `slot` of app `name` (in `group`) into production, and wait until the swap
    /// is done.
    pub async fn swap_slot(&self, group: &str, name: &str, slot: &str) -> Result<()> {
        let doing = format!("swapping slot `{slot}` of app {name} into production");
        let mut segments = Arm::site_segments(group, name).to_vec();
        segments.extend(["slots", slot, "slotsswap"]);
        let url = self.resource_url(&segments, WEB_API_VERSION);
        let body = serde_json::json!({ "targetSlot": "production", "preserveVnet": true });
        let reply = self
            .call_with(
                Method::POST,
                &url,
                Some(bytes::Bytes::from(body.to_string())),
                &doing,
            )
            .await?;
        match reply.status {
            StatusCode::OK => Ok(()),
            StatusCode::ACCEPTED => {
                match tokio::time::timeout(SWAP_TIMEOUT, self.wait_for_operation(&reply, &doing))
                    .await
                {
                    Ok(done) => done,
                    Err(_) => Err(Error::failed(format!(
                        "{doing}: not done after {}",
                        humantime::format_duration(SWAP_TIMEOUT)
                    ))
                    .hint("look at the app's activity log in the Azure portal; the swap may still finish")),
                }
            }
            StatusCode::NOT_FOUND if is_subscription_not_found(&reply) => {
                Err(self.subscription_not_found(&doing, &reply))
            }
            _ => Err(self.status_error_for(&doing, &reply, SWAP_PERMISSION)),
        }
    }
}
