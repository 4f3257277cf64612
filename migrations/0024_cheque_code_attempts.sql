-- Guessing cheque codes (issue 20, finding 7; docs/cheques.md "Codes"). The limiter used to read
-- a scope's block, test the code and only then count a wrong one, so a burst of wrong codes all
-- got past the check before any was counted. Now an attempt is claimed, in one statement, before
-- its code is tested: `attempts` counts the attempts that count against a scope, those still in
-- flight and those whose code was wrong (a known code gives its claim back). `wrong_codes`
-- counts the wrong ones alone: a right code forgives them, and an investor with one on record
-- is the one an API key's alert slows down.
alter table cheque_code_failures rename column failures to attempts;
alter table cheque_code_failures rename column last_failure_at to last_attempt_at;
alter table cheque_code_failures add column wrong_codes integer not null default 0;

-- Until now every counted attempt was a wrong code.
update cheque_code_failures set wrong_codes = attempts;

-- An API key's scope (`client:<key>`) only counts wrong codes now, to raise an alert: codes carry
-- 80 bits, and blocking the key locked a platform's honest winners out for guesses of others.
update cheque_code_failures set blocked_until = null where scope like 'client:%';

alter table cheque_code_failures add constraint cheque_code_failures_counts_not_negative
    check (attempts >= 0 and wrong_codes >= 0);
