-- `cheque.expiring` (PRODUCT.md section 13): the winner is reminded once, a configurable time
-- before the cheque's rest goes back to its sponsor (`cheques.expiring_notice_days`, docs/cheques.md).
-- Set when the reminder is written with its event; a cheque is reminded once however often the
-- clock moves.
alter table cheques add column expiring_notified_at timestamptz;

-- The job's read: active cheques not reminded yet, by expiry.
create index cheques_expiring_idx on cheques (expires_at)
    where status = 'active' and expiring_notified_at is null;
