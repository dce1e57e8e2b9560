//! `GetStatus`: podgraft's own state for `podgraft status`: what it runs with, whether containerd
//! is reachable and state loaded, dynamic containers by state, and the last failed control calls.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::api;
use crate::dynamic::Manager;
use crate::metrics::http::Health;

/// How many failed calls `GetStatus` reports.
const RECENT_ERRORS: usize = 10;

/// What `GetStatus` reports beside the manager's state.
#[derive(Debug)]
pub struct StatusInfo {
    pub runtime_endpoint: String,
    pub image_endpoint: String,
    pub mutable_handlers: Vec<String>,
    pub health: Health,
    started_at_unix_nanos: i64,
    recent: Mutex<VecDeque<api::RecentError>>,
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

impl StatusInfo {
    pub fn new(settings: &crate::config::Settings) -> Self {
        Self {
            runtime_endpoint: settings.runtime_endpoint.display().to_string(),
            image_endpoint: settings
                .image_endpoint
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            mutable_handlers: settings.mutable_handlers.clone(),
            health: Health {
                sockets: vec![settings.listen.clone(), settings.control_listen.clone()],
                runtime_endpoint: settings.runtime_endpoint.clone(),
            },
            started_at_unix_nanos: now_nanos(),
            recent: Mutex::new(VecDeque::new()),
        }
    }

    /// Remembers a failed control call (the oldest is dropped past [`RECENT_ERRORS`]).
    pub fn failed(&self, call: &str, status: &tonic::Status) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == RECENT_ERRORS {
            recent.pop_front();
        }
        recent.push_back(api::RecentError {
            time_unix_nanos: now_nanos(),
            call: call.to_string(),
            code: format!("{:?}", status.code()),
            message: status.message().to_string(),
        });
    }

    pub async fn status(&self, manager: &Manager) -> api::NodeStatus {
        let containers_by_state = manager
            .counts_by_state()
            .into_iter()
            .map(|(state, n)| (format!("{state:?}").to_lowercase(), n as u32))
            .collect();
        api::NodeStatus {
            version: env!("CARGO_PKG_VERSION").to_string(),
            runtime_endpoint: self.runtime_endpoint.clone(),
            image_endpoint: self.image_endpoint.clone(),
            mutable_handlers: self.mutable_handlers.clone(),
            containerd_reachable: self.health.containerd_reachable().await,
            state_loaded: manager.is_loaded(),
            containers_by_state,
            recent_errors: self
                .recent
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned()
                .collect(),
            started_at_unix_nanos: self.started_at_unix_nanos,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_ten_failures_oldest_first() {
        let settings = crate::config::Config::default()
            .settle(Default::default())
            .unwrap();
        let info = StatusInfo::new(&settings);
        for i in 0..12 {
            info.failed(
                "AddContainers",
                &tonic::Status::not_found(format!("pod {i}")),
            );
        }
        let recent = info.recent.lock().unwrap();
        assert_eq!(recent.len(), 10);
        assert_eq!(recent.front().unwrap().message, "pod 2");
        assert_eq!(recent.back().unwrap().code, "NotFound");
    }
}
