-- Issue 20, findings 8 and 9 (docs/webhooks.md, docs/ballot.md).

-- What a webhook receiver answered: its first 64 KiB at most, since the service reads no
-- further. Kept with the attempt so an operator sees why a delivery failed.
alter table webhook_attempts add column response_body text;

-- An endpoint's signing secret is shown once. A response stored for Idempotency-Key replays
-- held it in clear until now; the service stores `"secret":null` in its place from now on, and
-- the responses already stored are scrubbed the same way here.
update idempotency_keys
   set response_body = regexp_replace(response_body, '"secret":"whsec_[^"]*"', '"secret":null', 'g')
 where response_body like '%"secret":"whsec\_%';

-- A ballot's seed is no longer stored while the offer is open: it is derived from a server
-- secret (`ballot.seed_key`) and this random nonce, so a reader of the database cannot compute
-- the draw before the close. `ballot_seed` receives the seed when the draw is made (the close
-- reveals it). Offers opened before this migration have no nonce and keep their stored seed, so
-- they close as they were committed.
alter table offers add column ballot_nonce bytea;

alter table offers add constraint offers_ballot_nonce_length
    check (ballot_nonce is null or length(ballot_nonce) = 32);

-- An offer with a nonce holds its seed only once it has succeeded.
alter table offers add constraint offers_ballot_seed_hidden_until_drawn
    check (ballot_nonce is null or ballot_seed is null or status = 'succeeded');
