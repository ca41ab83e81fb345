//! Where the audio of a call is: on this node's disk, or, in a cluster, on the node that
//! took the call. Recordings and voicemail are written where the call's media was anchored
//! and stay there; another node asked for one forwards the request to that node
//! ([`crate::web::audio`]), which checks the asker's rights again and audits the listen.

use super::{DeskError, Records};
use crate::store;
use std::path::{Path, PathBuf};

/// Where a file of the records can be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// On this node's disk.
    Here(PathBuf),
    /// On another node of the cluster, at this HTTP base URL (`http://10.0.0.11:8080`).
    Peer { node: String, url: String },
}

impl Records {
    /// Where `file` (relative to the data directory) of journal entry `journal_id` is;
    /// `None` when neither this node nor the node that took the call can have it.
    pub async fn locate(
        &self,
        data_dir: &Path,
        file: &str,
        journal_id: i64,
    ) -> Result<Option<Held>, DeskError> {
        if let Some(path) = crate::records::data_file(data_dir, file).filter(|p| p.is_file()) {
            return Ok(Some(Held::Here(path)));
        }
        let Some(node) = store::journal::node_of(&self.store, journal_id).await? else {
            return Ok(None);
        };
        if Some(node.as_str()) == self.store.node() {
            return Ok(None);
        }
        Ok(store::cluster::http_url(&self.store, &node)
            .await?
            .map(|url| Held::Peer { node, url }))
    }
}
