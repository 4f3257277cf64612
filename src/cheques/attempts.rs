//! Slowing down code guessing (docs/cheques.md, "Codes"), in Postgres so that every `serve`
//! process sees the same counts.
//!
//! Per investor: an attempt is claimed in one statement *before* its codes are tested, and the
//! claim is refused while the investor is blocked, so the allowance holds however many requests
//! race. Past a free allowance each further attempt blocks the investor for twice as long as the
//! last (1 min, 2 min, … at most 1 h): a guesser gets a handful of tries an hour, an honest
//! winner who mistyped is back within minutes. A known code gives its claim back; a pledge made
//! with right codes also forgives the investor's wrong ones. Counts fade after a day.
//!
//! Per API key: wrong codes are counted, never blocked on (codes carry 80 bits; blocking the key
//! would lock a platform's honest winners out for the guesses of others). Past an alert
//! threshold the key is logged and counted in metrics, and its investors who already have a
//! wrong code on record get no free allowance left: their next wrong code blocks them. An
//! investor with no wrong code is never refused because of the key.
//!
//! Claims and their settlement are written outside the pledge's transaction (which rolls back on
//! a refusal).

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::ChequeError;

/// Attempts counted before an investor is blocked: their own typos.
const INVESTOR_ALLOWANCE: i32 = 5;
/// The allowance, on an API key past its alert, of its investors with a wrong code on record.
const WATCHED_ALLOWANCE: i32 = 1;
/// Wrong codes on one API key (within the fading window) that raise the alert.
const CLIENT_ALERT: i32 = 100;
const LONGEST_BLOCK_SECONDS: i32 = 3600;
const FADES_AFTER_HOURS: i32 = 24;

/// Who is guessing: the investor the pledge is for, and the API key sending it.
pub struct Scopes {
    investor: String,
    client: String,
}

impl Scopes {
    pub fn new(investor: Uuid, client: Option<Uuid>) -> Self {
        Scopes {
            investor: format!("investor:{investor}"),
            client: client_scope(client),
        }
    }

    /// A lookup that names no investor (`POST /v1/cheques/lookup`): the key's anonymous lookups
    /// share one scope, held to an investor's allowance and blocked like one, so leaving the
    /// investor out never buys more guesses.
    pub fn anonymous(client: Option<Uuid>) -> Self {
        let client = client_scope(client);
        Scopes {
            investor: format!("lookup:{client}"),
            client,
        }
    }
}

fn client_scope(client: Option<Uuid>) -> String {
    format!(
        "client:{}",
        client.map_or_else(|| "bootstrap".to_string(), |id| id.to_string())
    )
}

/// What testing a claimed attempt's codes showed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tested {
    /// A code named no cheque: the attempt stays counted.
    Wrong,
    /// The codes were right and the pledge was made: the attempt and the investor's wrong codes
    /// are forgiven.
    Right,
    /// Refused for another reason (or before any code was tested): not a guess, the attempt is
    /// given back.
    NotAGuess,
}

/// An attempt counted against the investor until [`Claim::settle`] says what its codes were.
/// Dropped unsettled (the request was abandoned), it stays counted, as a wrong code would.
#[must_use = "a claim is settled once its codes are tested"]
pub struct Claim {
    scopes: Scopes,
}

/// The investor's allowance, in [`claim`]'s statement: [`WATCHED_ALLOWANCE`] for an investor
/// with a wrong code on record when their API key is past [`CLIENT_ALERT`], else
/// [`INVESTOR_ALLOWANCE`].
macro_rules! allowance {
    () => {
        "(case when f.wrong_codes > 0 and coalesce(
              (select c.wrong_codes >= $6 from cheque_code_failures c
                where c.scope = $7 and c.last_attempt_at >= $2 - make_interval(hours => $3)), false)
          then $8 else $4 end)"
    };
}

/// Claims an attempt for the investor, or refuses with 429 `too_many_attempts` (and
/// `Retry-After`) while the investor is blocked.
pub async fn claim(pool: &PgPool, scopes: Scopes, now: DateTime<Utc>) -> Result<Claim, ChequeError> {
    // One statement: the conflict's row lock orders racing claims, and each sees the count and
    // block the one before it left. A faded count starts afresh.
    let claimed: Option<i32> = sqlx::query_scalar(concat!(
        "insert into cheque_code_failures as f (scope, attempts, last_attempt_at) values ($1, 1, $2)
         on conflict (scope) do update set
            attempts = case when f.last_attempt_at < $2 - make_interval(hours => $3) then 1
                            else f.attempts + 1 end,
            wrong_codes = case when f.last_attempt_at < $2 - make_interval(hours => $3) then 0
                               else f.wrong_codes end,
            last_attempt_at = $2,
            blocked_until = case
                when f.last_attempt_at < $2 - make_interval(hours => $3) then null
                when f.attempts + 1 >= ",
        allowance!(),
        " then $2 + make_interval(secs => least($5, 60 * power(2, f.attempts + 1 - ",
        allowance!(),
        "))::float8)
                end
          where f.blocked_until is null or f.blocked_until <= $2
         returning attempts"
    ))
    .bind(&scopes.investor)
    .bind(now)
    .bind(FADES_AFTER_HOURS)
    .bind(INVESTOR_ALLOWANCE)
    .bind(LONGEST_BLOCK_SECONDS)
    .bind(CLIENT_ALERT)
    .bind(&scopes.client)
    .bind(WATCHED_ALLOWANCE)
    .fetch_optional(pool)
    .await?;
    if claimed.is_some() {
        return Ok(Claim { scopes });
    }
    let until: Option<DateTime<Utc>> =
        sqlx::query_scalar("select blocked_until from cheque_code_failures where scope = $1")
            .bind(&scopes.investor)
            .fetch_optional(pool)
            .await?
            .flatten();
    // The block may have ended between the two statements: ask for a retry in a second.
    let wait = until.map_or(1, |until| (until - now).num_seconds().max(1) as u64);
    Err(ChequeError::TooManyAttempts { wait })
}

impl Claim {
    /// Settles the attempt by what its codes turned out to be.
    pub async fn settle(self, pool: &PgPool, tested: Tested, now: DateTime<Utc>) -> Result<(), ChequeError> {
        match tested {
            Tested::Wrong => self.wrong(pool, now).await,
            Tested::Right => self.give_back(pool, true).await,
            Tested::NotAGuess => self.give_back(pool, false).await,
        }
    }

    /// The attempt stays counted; the wrong code goes on the investor's record and the key's.
    async fn wrong(self, pool: &PgPool, now: DateTime<Utc>) -> Result<(), ChequeError> {
        sqlx::query("update cheque_code_failures set wrong_codes = wrong_codes + 1 where scope = $1")
            .bind(&self.scopes.investor)
            .execute(pool)
            .await?;
        let on_key: i32 = sqlx::query_scalar(
            "insert into cheque_code_failures as f (scope, attempts, wrong_codes, last_attempt_at)
             values ($1, 0, 1, $2)
             on conflict (scope) do update set
                wrong_codes = case when f.last_attempt_at < $2 - make_interval(hours => $3) then 1
                                   else f.wrong_codes + 1 end,
                last_attempt_at = $2
             returning wrong_codes",
        )
        .bind(&self.scopes.client)
        .bind(now)
        .bind(FADES_AFTER_HOURS)
        .fetch_one(pool)
        .await?;
        metrics::counter!("cheque_wrong_codes_total").increment(1);
        if on_key == CLIENT_ALERT {
            metrics::counter!("cheque_code_alerts_total").increment(1);
            tracing::warn!(
                scope = %self.scopes.client,
                wrong_codes = on_key,
                "many wrong cheque codes through one API key: its investors with a wrong code on record \
                 get no free attempts left"
            );
        }
        Ok(())
    }

    /// Gives the attempt back, and with `forgive` the investor's wrong codes too. Attempts still
    /// in flight stay counted; a block stays only if what is left still reaches the allowance.
    async fn give_back(self, pool: &PgPool, forgive: bool) -> Result<(), ChequeError> {
        sqlx::query(
            "merge into cheque_code_failures f using (values ($1::text)) as s(scope) on f.scope = s.scope
             when matched and f.attempts - 1 - case when $2 then f.wrong_codes else 0 end <= 0
                          and (case when $2 then 0 else f.wrong_codes end) = 0 then
                delete
             when matched then update set
                attempts = greatest(f.attempts - 1 - case when $2 then f.wrong_codes else 0 end, 0),
                wrong_codes = case when $2 then 0 else f.wrong_codes end,
                blocked_until = case
                    when f.attempts - 1 - case when $2 then f.wrong_codes else 0 end >= $3 then f.blocked_until
                    end",
        )
        .bind(&self.scopes.investor)
        .bind(forgive)
        .bind(INVESTOR_ALLOWANCE)
        .execute(pool)
        .await?;
        Ok(())
    }
}
