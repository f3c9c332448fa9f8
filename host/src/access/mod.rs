//! Who may do what. A caller is a principal of one tenant; everything it reaches is looked
//! up within that tenant, so another tenant's records are indistinguishable from absent
//! ones. Within the tenant, permissions are per folder:
//!
//! - in a personal folder, its owner has every permission and nobody else has any (an
//!   administrator included);
//! - in a shared folder, an administrator has every permission, and a member has what was
//!   granted to them;
//! - creating in a shared folder also needs the tenant to let members create shared
//!   connections, unless the caller is an administrator.

use crate::store::{Folder, FolderKind, Permissions, Principal, Role, Tenant};

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub tenant: Tenant,
}

/// Why an action is refused; the message is shown to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub message: String,
    pub permission: Option<&'static str>,
    pub folder_id: Option<String>,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.principal.role == Role::Admin
    }

    /// The caller's effective permissions on a folder of its tenant, given what was granted.
    pub fn permissions(&self, folder: &Folder, granted: Permissions) -> Permissions {
        match folder.kind {
            FolderKind::Personal if folder.owner_id.as_deref() == Some(&self.principal.id) => {
                Permissions::ALL
            }
            FolderKind::Personal => Permissions::NONE,
            FolderKind::Shared if self.is_admin() => Permissions::ALL,
            FolderKind::Shared => granted,
        }
    }

    /// Refuses unless the caller holds `needed` on `folder`.
    pub fn require(
        &self,
        folder: &Folder,
        granted: Permissions,
        needed: Permissions,
    ) -> Result<(), Refusal> {
        // Lookups are scoped to the caller's tenant; this is the second lock on that door.
        let has = if folder.tenant_id == self.tenant.id {
            self.permissions(folder, granted)
        } else {
            Permissions::NONE
        };
        if !has.contains(needed) {
            let message = match folder.kind {
                FolderKind::Personal => format!(
                    "folder `{}` is another user's personal workspace; only its owner can use it",
                    folder.name
                ),
                FolderKind::Shared => format!(
                    "you do not have the `{}` permission on folder `{}`; ask an administrator of tenant `{}` to grant it",
                    needed.name(),
                    folder.name,
                    self.tenant.name
                ),
            };
            return Err(Refusal {
                message,
                permission: Some(needed.name()),
                folder_id: Some(folder.id.clone()),
            });
        }
        if needed.contains(Permissions::CREATE)
            && folder.kind == FolderKind::Shared
            && !self.is_admin()
            && !self.tenant.members_can_create_shared_connections
        {
            return Err(Refusal {
                message: format!(
                    "the administrators of tenant `{}` do not allow members to create shared connections; create it in your personal workspace",
                    self.tenant.name
                ),
                permission: Some("create"),
                folder_id: Some(folder.id.clone()),
            });
        }
        Ok(())
    }

    /// Refuses unless the caller is an administrator of its tenant.
    pub fn require_admin(&self, what: &str) -> Result<(), Refusal> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(Refusal {
                message: format!(
                    "only an administrator of tenant `{}` can {what}",
                    self.tenant.name
                ),
                permission: None,
                folder_id: None,
            })
        }
    }

    /// Refuses unless the caller is `principal_id` or an administrator.
    pub fn require_self_or_admin(&self, principal_id: &str, what: &str) -> Result<(), Refusal> {
        if self.principal.id == principal_id {
            Ok(())
        } else {
            self.require_admin(what)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Timestamp;

    fn caller(id: &str, role: Role, members_create: bool) -> Caller {
        Caller {
            principal: Principal {
                id: id.into(),
                tenant_id: "ten_a".into(),
                name: id.into(),
                role,
                personal_folder_id: format!("fld_{id}"),
                created_at: Timestamp(0),
            },
            tenant: Tenant {
                id: "ten_a".into(),
                name: "acme".into(),
                members_can_create_shared_connections: members_create,
                created_at: Timestamp(0),
            },
        }
    }

    fn folder(kind: FolderKind, owner: Option<&str>) -> Folder {
        Folder {
            id: "fld_x".into(),
            tenant_id: "ten_a".into(),
            name: "sales".into(),
            kind,
            owner_id: owner.map(str::to_owned),
            created_at: Timestamp(0),
        }
    }

    #[test]
    fn a_personal_folder_belongs_to_its_owner_alone() {
        let mine = folder(FolderKind::Personal, Some("prn_bob"));
        let bob = caller("prn_bob", Role::Member, true);
        let admin = caller("prn_ada", Role::Admin, true);
        assert_eq!(bob.permissions(&mine, Permissions::NONE), Permissions::ALL);
        assert_eq!(
            admin.permissions(&mine, Permissions::ALL),
            Permissions::NONE
        );
        let refusal = admin
            .require(&mine, Permissions::NONE, Permissions::USE)
            .unwrap_err();
        assert!(refusal.message.contains("personal workspace"));
    }

    #[test]
    fn members_get_what_was_granted_and_admins_everything_on_shared_folders() {
        let shared = folder(FolderKind::Shared, None);
        let bob = caller("prn_bob", Role::Member, true);
        let view_use = Permissions::VIEW.union(Permissions::USE);
        assert!(bob.require(&shared, view_use, Permissions::USE).is_ok());
        let refusal = bob
            .require(&shared, view_use, Permissions::DELETE)
            .unwrap_err();
        assert_eq!(refusal.permission, Some("delete"));
        assert!(
            refusal
                .message
                .contains("`delete` permission on folder `sales`")
        );
        let admin = caller("prn_ada", Role::Admin, true);
        assert!(
            admin
                .require(&shared, Permissions::NONE, Permissions::DELETE)
                .is_ok()
        );
    }

    #[test]
    fn administrators_can_keep_members_from_creating_shared_connections() {
        let shared = folder(FolderKind::Shared, None);
        let bob = caller("prn_bob", Role::Member, false);
        let refusal = bob
            .require(&shared, Permissions::ALL, Permissions::CREATE)
            .unwrap_err();
        assert!(refusal.message.contains("do not allow members"));
        assert!(
            bob.require(&shared, Permissions::ALL, Permissions::EDIT)
                .is_ok()
        );
        let admin = caller("prn_ada", Role::Admin, false);
        assert!(
            admin
                .require(&shared, Permissions::NONE, Permissions::CREATE)
                .is_ok()
        );
        let personal = folder(FolderKind::Personal, Some("prn_bob"));
        assert!(
            bob.require(&personal, Permissions::NONE, Permissions::CREATE)
                .is_ok()
        );
    }
}
