//! Tenants, principals and their API tokens, folders and the permissions granted on them.

use super::{Page, PageRequest, Store, StoreError, Timestamp, new_id, page_of};
use crate::credentials::Secret;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;

#[derive(Debug, Clone, Serialize)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub members_can_create_shared_connections: bool,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }
    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "admin" => Ok(Self::Admin),
            "member" => Ok(Self::Member),
            other => Err(StoreError::Corrupt(format!("unknown role `{other}`"))),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Principal {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub role: Role,
    pub personal_folder_id: String,
    pub created_at: Timestamp,
}

/// A token as returned once, at creation.
#[derive(Debug, Serialize)]
pub struct NewToken {
    pub id: String,
    pub name: Option<String>,
    #[serde(serialize_with = "expose_token")]
    pub token: Secret,
    pub created_at: Timestamp,
}

fn expose_token<S: serde::Serializer>(token: &Secret, s: S) -> Result<S::Ok, S::Error> {
    // The one place a token is shown: the response to its creation.
    s.serialize_str(token.expose())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FolderKind {
    Shared,
    Personal,
}

#[derive(Debug, Clone, Serialize)]
pub struct Folder {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub kind: FolderKind,
    pub owner_id: Option<String>,
    pub created_at: Timestamp,
}

/// Permissions on a folder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Permissions(u8);

impl Permissions {
    pub const VIEW: Self = Self(1);
    pub const CREATE: Self = Self(2);
    pub const EDIT: Self = Self(4);
    pub const DELETE: Self = Self(8);
    pub const USE: Self = Self(16);
    pub const ALL: Self = Self(31);
    pub const NONE: Self = Self(0);

    const NAMES: [(Self, &'static str); 5] = [
        (Self::VIEW, "view"),
        (Self::CREATE, "create"),
        (Self::EDIT, "edit"),
        (Self::DELETE, "delete"),
        (Self::USE, "use"),
    ];

    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
    pub fn names(self) -> Vec<&'static str> {
        Self::NAMES
            .iter()
            .filter(|(p, _)| self.contains(*p))
            .map(|(_, n)| *n)
            .collect()
    }
    /// The permission named `name`, if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(p, _)| *p)
    }
    /// The name of a single permission.
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(p, _)| *p == self)
            .map(|(_, n)| *n)
            .unwrap_or("several")
    }
    fn bits(self) -> i64 {
        i64::from(self.0)
    }
    fn from_bits(bits: i64) -> Self {
        Self((bits & 31) as u8)
    }
}

impl Serialize for Permissions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(s)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Grant {
    pub folder_id: String,
    pub principal_id: String,
    pub permissions: Permissions,
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn tenant_row(r: &SqliteRow) -> Result<Tenant, StoreError> {
    Ok(Tenant {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        members_can_create_shared_connections: r
            .try_get("members_can_create_shared_connections")?,
        created_at: r.try_get("created_at")?,
    })
}

const PRINCIPAL_SELECT: &str = "SELECT p.id, p.tenant_id, p.name, p.role, p.created_at, \
     f.id AS personal_folder_id FROM principals p \
     JOIN folders f ON f.owner_id = p.id AND f.kind = 'personal'";

/// [`PRINCIPAL_SELECT`] with the tenant's columns and the token's id; join `tenants n` and
/// `api_tokens t`.
const PRINCIPAL_SELECT_WITH_TENANT: &str = "SELECT p.id, p.tenant_id, p.name, p.role, \
     p.created_at, f.id AS personal_folder_id, n.name AS tenant_name, \
     n.members_can_create_shared_connections AS tenant_members_create, \
     n.created_at AS tenant_created_at, t.id AS token_id FROM principals p \
     JOIN folders f ON f.owner_id = p.id AND f.kind = 'personal'";

fn principal_row(r: &SqliteRow) -> Result<Principal, StoreError> {
    Ok(Principal {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        name: r.try_get("name")?,
        role: Role::parse(r.try_get("role")?)?,
        personal_folder_id: r.try_get("personal_folder_id")?,
        created_at: r.try_get("created_at")?,
    })
}

fn folder_row(r: &SqliteRow) -> Result<Folder, StoreError> {
    let kind = match r.try_get::<&str, _>("kind")? {
        "shared" => FolderKind::Shared,
        "personal" => FolderKind::Personal,
        other => {
            return Err(StoreError::Corrupt(format!(
                "unknown folder kind `{other}`"
            )));
        }
    };
    Ok(Folder {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        name: r.try_get("name")?,
        kind,
        owner_id: r.try_get("owner_id")?,
        created_at: r.try_get("created_at")?,
    })
}

impl Store {
    /// Creates a tenant with its first administrator, who gets a token.
    pub async fn create_tenant(
        &self,
        name: &str,
        admin_name: &str,
    ) -> Result<(Tenant, Principal, NewToken), StoreError> {
        let tenant = Tenant {
            id: new_id("ten")?,
            name: name.to_owned(),
            members_can_create_shared_connections: true,
            created_at: Timestamp::now(),
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)")
            .bind(&tenant.id)
            .bind(&tenant.name)
            .bind(tenant.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                StoreError::conflict_on_unique(e, || format!("a tenant named `{name}` exists"))
            })?;
        let principal = insert_principal(&mut tx, &tenant.id, admin_name, Role::Admin).await?;
        let token = insert_token(&mut tx, &principal.id, Some("initial")).await?;
        tx.commit().await?;
        Ok((tenant, principal, token))
    }

    /// Every tenant, oldest first.
    pub async fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        sqlx::query(
            "SELECT id, name, members_can_create_shared_connections, created_at FROM tenants \
             ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(tenant_row)
        .collect()
    }

    pub async fn tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError> {
        let row = sqlx::query("SELECT * FROM tenants WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(tenant_row).transpose()
    }

    pub async fn update_tenant(
        &self,
        id: &str,
        name: Option<&str>,
        members_can_create_shared: Option<bool>,
    ) -> Result<Option<Tenant>, StoreError> {
        sqlx::query(
            "UPDATE tenants SET name = COALESCE(?, name), \
             members_can_create_shared_connections = COALESCE(?, members_can_create_shared_connections) \
             WHERE id = ?",
        )
        .bind(name)
        .bind(members_can_create_shared)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            StoreError::conflict_on_unique(e, || "another tenant has that name".to_owned())
        })?;
        self.tenant(id).await
    }

    /// Creates a principal (with its personal folder) and a first token.
    pub async fn create_principal(
        &self,
        tenant_id: &str,
        name: &str,
        role: Role,
    ) -> Result<(Principal, NewToken), StoreError> {
        let mut tx = self.pool.begin().await?;
        let principal = insert_principal(&mut tx, tenant_id, name, role).await?;
        let token = insert_token(&mut tx, &principal.id, Some("initial")).await?;
        tx.commit().await?;
        Ok((principal, token))
    }

    pub async fn principal(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<Principal>, StoreError> {
        let row = sqlx::query(&format!(
            "{PRINCIPAL_SELECT} WHERE p.tenant_id = ? AND p.id = ?"
        ))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(principal_row).transpose()
    }

    pub async fn principals(
        &self,
        tenant_id: &str,
        page: &PageRequest,
    ) -> Result<Page<Principal>, StoreError> {
        let rows = sqlx::query(&format!(
            "{PRINCIPAL_SELECT} WHERE p.tenant_id = ? AND p.id > ? ORDER BY p.id LIMIT ?"
        ))
        .bind(tenant_id)
        .bind(page.after.as_deref().unwrap_or(""))
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let items = rows
            .iter()
            .map(principal_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page_of(items, page.limit, |p| &p.id))
    }

    /// The principal and tenant a token belongs to, if the token is valid.
    /// The principal holding `token`, its tenant, and the token's id.
    pub async fn authenticate(
        &self,
        token: &str,
    ) -> Result<Option<(Principal, Tenant, String)>, StoreError> {
        // One query on every authenticated request: the principal and its tenant together.
        let row = sqlx::query(&format!(
            "{PRINCIPAL_SELECT_WITH_TENANT} JOIN api_tokens t ON t.principal_id = p.id \
             JOIN tenants n ON n.id = p.tenant_id \
             WHERE t.token_hash = ? AND t.revoked_at IS NULL"
        ))
        .bind(token_hash(token))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let principal = principal_row(&row)?;
        let tenant = Tenant {
            id: principal.tenant_id.clone(),
            name: row.try_get("tenant_name")?,
            members_can_create_shared_connections: row.try_get("tenant_members_create")?,
            created_at: row.try_get("tenant_created_at")?,
        };
        Ok(Some((principal, tenant, row.try_get("token_id")?)))
    }

    pub async fn create_token(
        &self,
        principal_id: &str,
        name: Option<&str>,
    ) -> Result<NewToken, StoreError> {
        let mut tx = self.pool.begin().await?;
        let token = insert_token(&mut tx, principal_id, name).await?;
        tx.commit().await?;
        Ok(token)
    }

    /// Revokes a principal's token; false when it has no such (unrevoked) token.
    pub async fn revoke_token(
        &self,
        principal_id: &str,
        token_id: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = ? \
             WHERE id = ? AND principal_id = ? AND revoked_at IS NULL",
        )
        .bind(Timestamp::now())
        .bind(token_id)
        .bind(principal_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn create_folder(&self, tenant_id: &str, name: &str) -> Result<Folder, StoreError> {
        let folder = Folder {
            id: new_id("fld")?,
            tenant_id: tenant_id.to_owned(),
            name: name.to_owned(),
            kind: FolderKind::Shared,
            owner_id: None,
            created_at: Timestamp::now(),
        };
        sqlx::query(
            "INSERT INTO folders (id, tenant_id, name, kind, created_at) VALUES (?, ?, ?, 'shared', ?)",
        )
        .bind(&folder.id)
        .bind(tenant_id)
        .bind(name)
        .bind(folder.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            StoreError::conflict_on_unique(e, || format!("a shared folder named `{name}` exists"))
        })?;
        Ok(folder)
    }

    pub async fn folder(&self, tenant_id: &str, id: &str) -> Result<Option<Folder>, StoreError> {
        let row = sqlx::query("SELECT * FROM folders WHERE tenant_id = ? AND id = ?")
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(folder_row).transpose()
    }

    /// Every folder of the tenant with the permissions granted to `principal_id` on it.
    pub async fn folders_with_grants(
        &self,
        tenant_id: &str,
        principal_id: &str,
    ) -> Result<Vec<(Folder, Permissions)>, StoreError> {
        let rows = sqlx::query(
            "SELECT f.*, COALESCE(g.permissions, 0) AS granted FROM folders f \
             LEFT JOIN folder_grants g ON g.folder_id = f.id AND g.principal_id = ? \
             WHERE f.tenant_id = ? ORDER BY f.id",
        )
        .bind(principal_id)
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    folder_row(r)?,
                    Permissions::from_bits(r.try_get("granted")?),
                ))
            })
            .collect()
    }

    /// What `principal_id` was granted on a folder (not counting role or ownership).
    pub async fn granted(
        &self,
        folder_id: &str,
        principal_id: &str,
    ) -> Result<Permissions, StoreError> {
        let bits: Option<i64> = sqlx::query_scalar(
            "SELECT permissions FROM folder_grants WHERE folder_id = ? AND principal_id = ?",
        )
        .bind(folder_id)
        .bind(principal_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(bits.map(Permissions::from_bits).unwrap_or_default())
    }

    pub async fn grants(&self, folder_id: &str) -> Result<Vec<Grant>, StoreError> {
        let rows = sqlx::query(
            "SELECT folder_id, principal_id, permissions FROM folder_grants \
             WHERE folder_id = ? ORDER BY principal_id",
        )
        .bind(folder_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Grant {
                    folder_id: r.try_get("folder_id")?,
                    principal_id: r.try_get("principal_id")?,
                    permissions: Permissions::from_bits(r.try_get("permissions")?),
                })
            })
            .collect()
    }

    pub async fn set_grant(&self, grant: &Grant) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO folder_grants (folder_id, principal_id, permissions) VALUES (?, ?, ?) \
             ON CONFLICT (folder_id, principal_id) DO UPDATE SET permissions = excluded.permissions",
        )
        .bind(&grant.folder_id)
        .bind(&grant.principal_id)
        .bind(grant.permissions.bits())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_grant(
        &self,
        folder_id: &str,
        principal_id: &str,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("DELETE FROM folder_grants WHERE folder_id = ? AND principal_id = ?")
                .bind(folder_id)
                .bind(principal_id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }
}

async fn insert_principal(
    tx: &mut super::Tx<'_>,
    tenant_id: &str,
    name: &str,
    role: Role,
) -> Result<Principal, StoreError> {
    let now = Timestamp::now();
    let id = new_id("prn")?;
    let folder_id = new_id("fld")?;
    sqlx::query(
        "INSERT INTO principals (id, tenant_id, name, role, created_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&id)
    .bind(tenant_id)
    .bind(name)
    .bind(role.as_str())
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(|e| {
        StoreError::conflict_on_unique(e, || format!("a principal named `{name}` exists"))
    })?;
    sqlx::query(
        "INSERT INTO folders (id, tenant_id, name, kind, owner_id, created_at) \
         VALUES (?, ?, ?, 'personal', ?, ?)",
    )
    .bind(&folder_id)
    .bind(tenant_id)
    .bind(format!("{name} (personal)"))
    .bind(&id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(Principal {
        id,
        tenant_id: tenant_id.to_owned(),
        name: name.to_owned(),
        role,
        personal_folder_id: folder_id,
        created_at: now,
    })
}

async fn insert_token(
    tx: &mut super::Tx<'_>,
    principal_id: &str,
    name: Option<&str>,
) -> Result<NewToken, StoreError> {
    let bytes = super::random_bytes::<32>()?;
    let token = Secret::new(format!("jt_{}", URL_SAFE_NO_PAD.encode(bytes)));
    let id = new_id("tok")?;
    let now = Timestamp::now();
    sqlx::query(
        "INSERT INTO api_tokens (id, principal_id, token_hash, name, created_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&id)
    .bind(principal_id)
    .bind(token_hash(token.expose()))
    .bind(name)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(NewToken {
        id,
        name: name.map(str::to_owned),
        token,
        created_at: now,
    })
}
