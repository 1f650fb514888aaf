//! Notifications: stored until read, counted by type.

use std::collections::BTreeMap;

use super::{BeginWrite as _, Store, StoreError, with_db};
use chrono::{DateTime, Utc};
use convene_protocol::{Notification, NotificationCounts, NotificationId, UserId};

const NOTIFICATION_COLUMNS: &str = "id, type, title, message, data, created_at, read_at";

/// A notification to store for `user_id`.
#[derive(Clone, Debug, PartialEq)]
pub struct NewNotification {
    pub user_id: UserId,
    pub kind: String,
    pub title: String,
    pub message: String,
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
pub(super) struct NotificationRow {
    id: i64,
    #[sqlx(rename = "type")]
    kind: String,
    title: String,
    message: String,
    pub(super) data: String,
    created_at: DateTime<Utc>,
    read_at: Option<DateTime<Utc>>,
}

impl TryFrom<NotificationRow> for Notification {
    type Error = StoreError;

    fn try_from(row: NotificationRow) -> Result<Self, StoreError> {
        let data = serde_json::from_str(&row.data)
            .map_err(|err| StoreError::Corrupt(format!("notification {}: data: {err}", row.id)))?;
        Ok(Self {
            id: NotificationId(row.id),
            kind: row.kind,
            title: row.title,
            message: row.message,
            data,
            created_at: row.created_at,
            read_at: row.read_at,
        })
    }
}

/// Which notifications to mark read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadSelection {
    Ids(Vec<NotificationId>),
    All,
}

impl Store {
    pub async fn insert_notification(&self, new: &NewNotification) -> Result<Notification, StoreError> {
        let sql = format!(
            "INSERT INTO notifications (user_id, type, title, message, data, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {NOTIFICATION_COLUMNS}"
        );
        let data = new.data.to_string();
        let row: NotificationRow = with_db!(&self.db, pool => {
            sqlx::query_as(&sql)
                .bind(new.user_id.0).bind(&new.kind).bind(&new.title).bind(&new.message).bind(&data).bind(new.created_at)
                .fetch_one(pool).await?
        });
        row.try_into()
    }

    /// A page of `user`'s notifications, newest first, and whether more lie beyond it.
    pub async fn list_notifications(
        &self,
        user: UserId,
        unread_only: bool,
        before: Option<NotificationId>,
        limit: u32,
    ) -> Result<(Vec<Notification>, bool), StoreError> {
        let unread = if unread_only { " AND read_at IS NULL" } else { "" };
        let sql = format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE user_id = $1 AND id < $2{unread} \
             ORDER BY id DESC LIMIT $3"
        );
        let before = before.map_or(i64::MAX, |id| id.0);
        let rows: Vec<NotificationRow> = with_db!(&self.db, pool => {
            sqlx::query_as(&sql).bind(user.0).bind(before).bind(i64::from(limit) + 1).fetch_all(pool).await?
        });
        let more = rows.len() as i64 > i64::from(limit);
        let page = rows.into_iter().take(limit as usize).map(Notification::try_from).collect::<Result<_, _>>()?;
        Ok((page, more))
    }

    /// `user`'s unread notifications, in all and by type.
    pub async fn notification_counts(&self, user: UserId) -> Result<NotificationCounts, StoreError> {
        let rows: Vec<(String, i64)> = with_db!(&self.db, pool => {
            sqlx::query_as(
                "SELECT type, COUNT(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL GROUP BY type",
            )
            .bind(user.0).fetch_all(pool).await?
        });
        let by_type: BTreeMap<String, i64> = rows.into_iter().collect();
        Ok(NotificationCounts { total: by_type.values().sum(), by_type })
    }

    /// Marks `user`'s notifications read; answers the ids that were unread and are read now.
    pub async fn mark_notifications_read(
        &self,
        user: UserId,
        selection: &ReadSelection,
        at: DateTime<Utc>,
    ) -> Result<Vec<NotificationId>, StoreError> {
        let ids: Vec<i64> = with_db!(write &self.db, pool => {
            match selection {
                ReadSelection::All => {
                    sqlx::query_scalar(
                        "UPDATE notifications SET read_at = $2 WHERE user_id = $1 AND read_at IS NULL RETURNING id",
                    )
                    .bind(user.0).bind(at).fetch_all(pool).await?
                }
                ReadSelection::Ids(ids) => {
                    let mut tx = pool.begin_write().await?;
                    let mut marked = Vec::with_capacity(ids.len());
                    for id in ids {
                        let read: Option<i64> = sqlx::query_scalar(
                            "UPDATE notifications SET read_at = $3 WHERE id = $2 AND user_id = $1 AND read_at IS NULL RETURNING id",
                        )
                        .bind(user.0).bind(id.0).bind(at).fetch_optional(&mut *tx).await?;
                        marked.extend(read);
                    }
                    tx.commit().await?;
                    marked
                }
            }
        });
        Ok(ids.into_iter().map(NotificationId).collect())
    }
}
