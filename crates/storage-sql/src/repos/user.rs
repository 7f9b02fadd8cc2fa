use async_trait::async_trait;
use vestibule_domain::{
    Clock, Ulid, new_id,
    user::{Password, User, UserEmail},
};
use vestibule_storage::{
    Rng, StorageError,
    user::{UserAttributeRepository, UserEmailRepository, UserPasswordRepository, UserRepository},
};

use super::repo_struct;
use crate::conn::{DbResult, execute, from_ms, ms, opt_from_ms, opt_ulid, run, to_u64, ulid};

repo_struct!(
    SqlUserRepository,
    SqlUserEmailRepository,
    SqlUserPasswordRepository,
    SqlUserAttributeRepository
);

#[derive(sqlx::FromRow)]
struct UserRow {
    id: String,
    username: String,
    created_at: i64,
    locked_at: Option<i64>,
    deactivated_at: Option<i64>,
    can_request_admin: bool,
}

impl TryFrom<UserRow> for User {
    type Error = StorageError;
    fn try_from(r: UserRow) -> Result<Self, StorageError> {
        Ok(User {
            id: ulid(&r.id)?,
            username: r.username,
            created_at: from_ms(r.created_at)?,
            locked_at: opt_from_ms(r.locked_at)?,
            deactivated_at: opt_from_ms(r.deactivated_at)?,
            can_request_admin: r.can_request_admin,
        })
    }
}

const USER_COLUMNS: &str = "id, username, created_at, locked_at, deactivated_at, can_request_admin";

#[async_trait]
impl UserRepository for SqlUserRepository<'_> {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        username: &str,
    ) -> Result<User, StorageError> {
        let user = User {
            id: new_id(clock, rng),
            username: username.to_owned(),
            created_at: clock.now(),
            locked_at: None,
            deactivated_at: None,
            can_request_admin: false,
        };
        execute!(self.conn, sqlx::query(
            "INSERT INTO users (id, username, created_at, can_request_admin) VALUES ($1, $2, $3, FALSE)"
        )
        .bind(user.id.to_string())
        .bind(&user.username)
        .bind(ms(user.created_at)))
        .db()?;
        Ok(user)
    }

    async fn lookup(&mut self, id: Ulid) -> Result<Option<User>, StorageError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row: Option<UserRow> = run!(self.conn, |c| sqlx::query_as(&sql)
            .bind(id.to_string())
            .fetch_optional(c)
            .await)
        .db()?;
        row.map(User::try_from).transpose()
    }

    async fn find_by_username(&mut self, username: &str) -> Result<Option<User>, StorageError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1");
        let row: Option<UserRow> = run!(self.conn, |c| sqlx::query_as(&sql)
            .bind(username)
            .fetch_optional(c)
            .await)
        .db()?;
        row.map(User::try_from).transpose()
    }

    async fn list(&mut self, after: Option<Ulid>, limit: u32) -> Result<Vec<User>, StorageError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id > $1 ORDER BY id LIMIT $2");
        let after = after.map(|a| a.to_string()).unwrap_or_default();
        let rows: Vec<UserRow> = run!(self.conn, |c| sqlx::query_as(&sql)
            .bind(&after)
            .bind(i64::from(limit))
            .fetch_all(c)
            .await)
        .db()?;
        rows.into_iter().map(User::try_from).collect()
    }

    async fn count(&mut self) -> Result<u64, StorageError> {
        let n: i64 = run!(self.conn, |c| sqlx::query_scalar(
            "SELECT COUNT(*) FROM users"
        )
        .fetch_one(c)
        .await)
        .db()?;
        Ok(to_u64(n))
    }

    async fn lock(&mut self, clock: &dyn Clock, mut user: User) -> Result<User, StorageError> {
        let now = clock.now();
        execute!(
            self.conn,
            sqlx::query("UPDATE users SET locked_at = $1 WHERE id = $2 AND locked_at IS NULL")
                .bind(ms(now))
                .bind(user.id.to_string())
        )
        .db()?;
        user.locked_at.get_or_insert(now);
        Ok(user)
    }

    async fn unlock(&mut self, mut user: User) -> Result<User, StorageError> {
        execute!(
            self.conn,
            sqlx::query("UPDATE users SET locked_at = NULL WHERE id = $1")
                .bind(user.id.to_string())
        )
        .db()?;
        user.locked_at = None;
        Ok(user)
    }

    async fn deactivate(
        &mut self,
        clock: &dyn Clock,
        mut user: User,
    ) -> Result<User, StorageError> {
        let now = clock.now();
        execute!(
            self.conn,
            sqlx::query(
                "UPDATE users SET deactivated_at = $1 WHERE id = $2 AND deactivated_at IS NULL"
            )
            .bind(ms(now))
            .bind(user.id.to_string())
        )
        .db()?;
        user.deactivated_at.get_or_insert(now);
        Ok(user)
    }

    async fn reactivate(&mut self, mut user: User) -> Result<User, StorageError> {
        execute!(
            self.conn,
            sqlx::query("UPDATE users SET deactivated_at = NULL WHERE id = $1")
                .bind(user.id.to_string())
        )
        .db()?;
        user.deactivated_at = None;
        Ok(user)
    }

    async fn set_can_request_admin(
        &mut self,
        mut user: User,
        can: bool,
    ) -> Result<User, StorageError> {
        execute!(
            self.conn,
            sqlx::query("UPDATE users SET can_request_admin = $1 WHERE id = $2")
                .bind(can)
                .bind(user.id.to_string())
        )
        .db()?;
        user.can_request_admin = can;
        Ok(user)
    }
}

#[derive(sqlx::FromRow)]
struct EmailRow {
    id: String,
    user_id: String,
    email: String,
    created_at: i64,
}

impl TryFrom<EmailRow> for UserEmail {
    type Error = StorageError;
    fn try_from(r: EmailRow) -> Result<Self, StorageError> {
        Ok(UserEmail {
            id: ulid(&r.id)?,
            user_id: ulid(&r.user_id)?,
            email: r.email,
            created_at: from_ms(r.created_at)?,
        })
    }
}

#[async_trait]
impl UserEmailRepository for SqlUserEmailRepository<'_> {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        user: &User,
        email: &str,
    ) -> Result<UserEmail, StorageError> {
        let e = UserEmail {
            id: new_id(clock, rng),
            user_id: user.id,
            email: email.to_owned(),
            created_at: clock.now(),
        };
        execute!(
            self.conn,
            sqlx::query(
                "INSERT INTO user_emails (id, user_id, email, created_at) VALUES ($1, $2, $3, $4)"
            )
            .bind(e.id.to_string())
            .bind(e.user_id.to_string())
            .bind(&e.email)
            .bind(ms(e.created_at))
        )
        .db()?;
        Ok(e)
    }

    async fn lookup(&mut self, id: Ulid) -> Result<Option<UserEmail>, StorageError> {
        let row: Option<EmailRow> = run!(self.conn, |c| sqlx::query_as(
            "SELECT id, user_id, email, created_at FROM user_emails WHERE id = $1"
        )
        .bind(id.to_string())
        .fetch_optional(c)
        .await)
        .db()?;
        row.map(UserEmail::try_from).transpose()
    }

    async fn find_by_email(&mut self, email: &str) -> Result<Option<UserEmail>, StorageError> {
        let row: Option<EmailRow> = run!(self.conn, |c| {
            sqlx::query_as(
            "SELECT id, user_id, email, created_at FROM user_emails WHERE LOWER(email) = LOWER($1)"
        )
        .bind(email)
        .fetch_optional(c)
        .await
        })
        .db()?;
        row.map(UserEmail::try_from).transpose()
    }

    async fn all(&mut self, user: &User) -> Result<Vec<UserEmail>, StorageError> {
        let rows: Vec<EmailRow> = run!(self.conn, |c| {
            sqlx::query_as(
            "SELECT id, user_id, email, created_at FROM user_emails WHERE user_id = $1 ORDER BY id"
        )
        .bind(user.id.to_string())
        .fetch_all(c)
        .await
        })
        .db()?;
        rows.into_iter().map(UserEmail::try_from).collect()
    }

    async fn remove(&mut self, email: UserEmail) -> Result<(), StorageError> {
        execute!(
            self.conn,
            sqlx::query("DELETE FROM user_emails WHERE id = $1").bind(email.id.to_string())
        )
        .db()?;
        Ok(())
    }
}

#[derive(sqlx::FromRow)]
struct PasswordRow {
    id: String,
    user_id: String,
    hashed_password: String,
    version: i64,
    upgraded_from_id: Option<String>,
    created_at: i64,
}

impl TryFrom<PasswordRow> for Password {
    type Error = StorageError;
    fn try_from(r: PasswordRow) -> Result<Self, StorageError> {
        Ok(Password {
            id: ulid(&r.id)?,
            user_id: ulid(&r.user_id)?,
            hashed_password: r.hashed_password,
            version: u16::try_from(r.version).map_err(|_| {
                StorageError::InvalidData(format!("password version {}", r.version))
            })?,
            upgraded_from_id: opt_ulid(r.upgraded_from_id.as_deref())?,
            created_at: from_ms(r.created_at)?,
        })
    }
}

#[async_trait]
impl UserPasswordRepository for SqlUserPasswordRepository<'_> {
    async fn add(
        &mut self,
        rng: Rng<'_>,
        clock: &dyn Clock,
        user: &User,
        version: u16,
        hashed_password: String,
        upgraded_from: Option<&Password>,
    ) -> Result<Password, StorageError> {
        let p = Password {
            id: new_id(clock, rng),
            user_id: user.id,
            hashed_password,
            version,
            upgraded_from_id: upgraded_from.map(|p| p.id),
            created_at: clock.now(),
        };
        execute!(self.conn, sqlx::query(
            "INSERT INTO user_passwords (id, user_id, hashed_password, version, upgraded_from_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)"
        )
        .bind(p.id.to_string())
        .bind(p.user_id.to_string())
        .bind(&p.hashed_password)
        .bind(i64::from(p.version))
        .bind(p.upgraded_from_id.map(|i| i.to_string()))
        .bind(ms(p.created_at)))
        .db()?;
        Ok(p)
    }

    async fn active(&mut self, user: &User) -> Result<Option<Password>, StorageError> {
        let row: Option<PasswordRow> = run!(self.conn, |c| sqlx::query_as(
            "SELECT id, user_id, hashed_password, version, upgraded_from_id, created_at \
             FROM user_passwords WHERE user_id = $1 ORDER BY id DESC LIMIT 1"
        )
        .bind(user.id.to_string())
        .fetch_optional(c)
        .await)
        .db()?;
        row.map(Password::try_from).transpose()
    }
}

#[async_trait]
impl UserAttributeRepository for SqlUserAttributeRepository<'_> {
    async fn set(
        &mut self,
        clock: &dyn Clock,
        user: &User,
        name: &str,
        value: &str,
    ) -> Result<bool, StorageError> {
        // The conditional DO UPDATE leaves an unchanged value untouched, so
        // the affected-row count says whether anything changed.
        let changed = execute!(
            self.conn,
            sqlx::query(
                "INSERT INTO user_attributes (user_id, name, value, updated_at) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (user_id, name) DO UPDATE \
                 SET value = excluded.value, updated_at = excluded.updated_at \
                 WHERE user_attributes.value <> excluded.value"
            )
            .bind(user.id.to_string())
            .bind(name)
            .bind(value)
            .bind(ms(clock.now()))
        )
        .db()?;
        Ok(changed > 0)
    }

    async fn all(
        &mut self,
        user: &User,
    ) -> Result<std::collections::BTreeMap<String, String>, StorageError> {
        let rows: Vec<(String, String)> = run!(self.conn, |c| sqlx::query_as(
            "SELECT name, value FROM user_attributes WHERE user_id = $1 ORDER BY name"
        )
        .bind(user.id.to_string())
        .fetch_all(c)
        .await)
        .db()?;
        Ok(rows.into_iter().collect())
    }

    async fn remove(&mut self, user: &User, name: &str) -> Result<bool, StorageError> {
        let n = execute!(
            self.conn,
            sqlx::query("DELETE FROM user_attributes WHERE user_id = $1 AND name = $2")
                .bind(user.id.to_string())
                .bind(name)
        )
        .db()?;
        Ok(n > 0)
    }
}
