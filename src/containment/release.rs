//! `release`: lift a containment by removing its file from the policy folder, after checking
//! that the policy without it compiles, and say what reach that restores.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use super::file::{ContainmentId, scopes_in};
use super::reach_change::ReachChange;
use super::{ContainError, compile, policy_texts};
use crate::policy::CompiledPolicy;

/// A released containment.
#[derive(Debug)]
pub struct Released {
    /// Its id.
    pub id: ContainmentId,
    /// The file removed.
    pub file: PathBuf,
    /// The policy without it.
    pub after: CompiledPolicy,
    /// The reach the release restores; `None` when the policy with the file was itself
    /// invalid (then sidecars kept their last good one, and the restored reach cannot be
    /// computed from it).
    pub restored: Option<ReachChange>,
}

/// Removes containment `id` from the policy folder `dir`.
///
/// # Errors
/// The id, the folder, or the policy without the file is refused; removing failed.
pub fn release(dir: &Path, id: &str) -> Result<Released, ContainError> {
    let id = ContainmentId::parse(id)?;
    let texts = policy_texts(dir)?;
    let dir_text = dir.display().to_string();
    let file = dir.join(id.file_name());
    let name = file.display().to_string();
    let Some((_, contained)) = texts.iter().find(|(n, _)| *n == name) else {
        let id = id.as_str().to_owned();
        return Err(ContainError::NoSuchContainment(id, dir_text, name));
    };
    let rest: Vec<(String, String)> = texts.iter().filter(|(n, _)| *n != name).cloned().collect();
    if rest.is_empty() {
        return Err(ContainError::OnlyPolicyFile(name, dir_text));
    }
    let after = compile(&rest)
        .map_err(|e| ContainError::InvalidWithout(name.clone(), dir_text.clone(), e))?;
    let scopes = scopes_in(contained).unwrap_or_else(|| vec!["*".to_owned()]);
    let restored = match compile(&texts) {
        Ok(before) => Some(ReachChange::of(&before, &after, &scopes)?),
        Err(_) => None,
    };
    fs::remove_file(&file).map_err(|e| ContainError::io(format!("removing {name}"), &e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ContainError::io(format!("syncing {dir_text}"), &e))?;
    Ok(Released {
        id,
        file,
        after,
        restored,
    })
}
