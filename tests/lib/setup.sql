-- setup.sql: roles, database and data the integration and client tests use.
CREATE ROLE lp_server LOGIN PASSWORD 'server-secret';
-- their passwords are rotating tokens (test_rotation.c, test_databricks.c: a role per test, as tests run in parallel)
CREATE ROLE lp_rot1 LOGIN; CREATE ROLE lp_rot2 LOGIN; CREATE ROLE lp_rot3 LOGIN;
CREATE ROLE lp_rot4 LOGIN; CREATE ROLE lp_rot5 LOGIN; CREATE ROLE lp_rot6 LOGIN;
CREATE ROLE lp_rot7 LOGIN; CREATE ROLE lp_rot8 LOGIN; CREATE ROLE lp_rot9 LOGIN;
-- the pool role of test_tokenauth.c (clients log in with their own Databricks tokens)
CREATE ROLE lp_tok1 LOGIN; CREATE ROLE lp_tok2 LOGIN; CREATE ROLE lp_tok3 LOGIN;
CREATE ROLE lp_tok4 LOGIN; CREATE ROLE lp_tok5 LOGIN; CREATE ROLE lp_tok6 LOGIN;
CREATE ROLE lp_tok7 LOGIN;
CREATE ROLE lp_rot10 LOGIN;
CREATE ROLE lp_rot11 LOGIN; CREATE ROLE lp_rot12 LOGIN; CREATE ROLE lp_rot13 LOGIN;
CREATE ROLE lp_rot14 LOGIN; CREATE ROLE lp_rot15 LOGIN; CREATE ROLE lp_rot16 LOGIN;
CREATE ROLE lp_rot17 LOGIN; CREATE ROLE lp_rot18 LOGIN;
-- test_redteam16.c's own (its tests run beside those of test_rotation.c and test_databricks.c)
CREATE ROLE lp_rt16_1 LOGIN; CREATE ROLE lp_rt16_2 LOGIN; CREATE ROLE lp_rt16_3 LOGIN;
CREATE ROLE lp_rt16_4 LOGIN; CREATE ROLE lp_rt16_5 LOGIN; CREATE ROLE lp_rt16_6 LOGIN;
-- test_redteam33.c's own token pool roles
CREATE ROLE lp_rt33_1 LOGIN; CREATE ROLE lp_rt33_2 LOGIN; CREATE ROLE lp_rt33_3 LOGIN;
-- test_redteam34.c's own token pool roles
CREATE ROLE lp_rt34_1 LOGIN; CREATE ROLE lp_rt34_2 LOGIN;
SET password_encryption = 'md5';
CREATE ROLE lp_md5 LOGIN PASSWORD 'md5-secret';
RESET password_encryption;
CREATE ROLE lp_plain LOGIN PASSWORD 'plain-secret';
CREATE ROLE lp_dave LOGIN PASSWORD 'dave-secret';
SET password_encryption = 'md5';
CREATE ROLE lp_erin LOGIN PASSWORD 'erin-secret';
RESET password_encryption;
-- row-level security (test_rls.c): lakeproxy assumes lp_tenant for its clients
CREATE ROLE lp_tenant NOLOGIN;
GRANT lp_tenant TO lp_server;
CREATE DATABASE lp_test OWNER lp_server;
\c lp_test
-- auth_query reads verifiers through a SECURITY DEFINER function, as PgBouncer's docs advise
CREATE FUNCTION public.lp_lookup(uname text, OUT usename name, OUT passwd text)
    RETURNS record LANGUAGE sql SECURITY DEFINER
    AS $$ SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = uname $$;
REVOKE ALL ON FUNCTION public.lp_lookup(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.lp_lookup(text) TO lp_server, lp_rot15;
-- contrib functions that run SQL built from their arguments (tablefunc's crosstab and
-- connectby, xml2's xpath_table): installed by an administrator, refused to clients under
-- rls: as the built-in query_to_xml is (test_rls.c)
CREATE EXTENSION tablefunc;
CREATE EXTENSION xml2;
SET ROLE lp_server;
CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 1000) g;
GRANT SELECT ON items TO PUBLIC;
-- 1000 rows, 100 per tenant 0-9; a client sees the rows of the tenant lakeproxy injects, and
-- nothing when it injects none (nullif: after a transaction a custom setting reads '')
CREATE TABLE rls_docs (id int PRIMARY KEY, tenant_id int NOT NULL, body text NOT NULL);
INSERT INTO rls_docs SELECT g, g % 10, 'doc ' || g FROM generate_series(1, 1000) g;
ALTER TABLE rls_docs ENABLE ROW LEVEL SECURITY;
ALTER TABLE rls_docs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON rls_docs
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::int);
GRANT SELECT, UPDATE ON rls_docs TO lp_tenant;
-- column masking (test_masking.c): every value below containing "secret" or one of the SSN
-- prefixes 111-22 / 444-55 / 777-88, and the salaries 12345 / 23456 / 34567, must never reach
-- a masked client; a child table inherits the masking, a view and a function read it
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, email text NOT NULL,
                        ssn text NOT NULL, salary int NOT NULL);
INSERT INTO customers VALUES (1, 'Ada Lovelace', 'ada.secret@example.com', '111-22-3333', 12345),
                             (2, 'Grace Hopper', 'grace.secret@navy.example', '444-55-6666', 23456);
CREATE TABLE vip_customers () INHERITS (customers);
INSERT INTO vip_customers VALUES (3, 'Zoë Vip', 'zoë.secret@example.com', '777-88-9999', 34567);
CREATE VIEW customer_contacts AS SELECT id, email AS contact FROM customers;
CREATE VIEW customer_names AS SELECT id, name FROM customers;
CREATE FUNCTION customer_email(int) RETURNS text LANGUAGE sql STABLE
    AS 'SELECT email FROM customers WHERE id = $1';
CREATE VIEW item_contacts AS SELECT id, customer_email(id) AS contact FROM items;
-- views over masked columns (test_maskviews.c): pure projections are resolved to their base
-- columns' rules; views that compute, filter or sort on masked columns stay refused whole
CREATE VIEW mv_all AS SELECT * FROM customers;
CREATE VIEW mv_renamed AS SELECT id, email AS contact, ssn AS tax_id, salary AS pay FROM customers;
CREATE VIEW mv_over_view AS SELECT id, contact AS reach, tax_id FROM mv_renamed;
CREATE VIEW mv_expr AS SELECT id, lower(email) AS contact FROM customers;
CREATE VIEW mv_where AS SELECT id, email FROM customers WHERE ssn LIKE '1%';
CREATE VIEW mv_sorted AS SELECT id, email FROM customers ORDER BY email;
CREATE VIEW mv_join AS SELECT c.id, c.email, i.name AS item FROM customers c JOIN items i ON i.id = c.id;
CREATE MATERIALIZED VIEW mv_mat AS SELECT id, ssn AS tax_id FROM customers;
CREATE VIEW mv_notes AS SELECT id, name || ' (note)' AS note FROM customers;
GRANT SELECT ON mv_all, mv_renamed, mv_over_view, mv_expr, mv_where, mv_sorted, mv_join, mv_mat,
    mv_notes TO PUBLIC;
-- a rule on a partition (accounts_eu.iban) or an inheritance child (vip_notes.body) masks
-- the column read through the parent too: PostgreSQL names the parent as the rows' origin
CREATE TABLE accounts (id int, region text, iban text) PARTITION BY LIST (region);
CREATE TABLE accounts_eu PARTITION OF accounts FOR VALUES IN ('eu');
CREATE TABLE accounts_us PARTITION OF accounts FOR VALUES IN ('us');
INSERT INTO accounts VALUES (1, 'eu', 'DE89-secret-3000'), (2, 'us', 'US-1234');
CREATE TABLE notes (id int, body text);
CREATE TABLE vip_notes () INHERITS (notes);
INSERT INTO vip_notes VALUES (7, 'a secret note');
CREATE VIEW accounts_all AS SELECT * FROM accounts;
-- rules that each show a different part (email on the parent, last4 on the child) reach
-- one column together: it is redacted whole
CREATE TABLE contacts (id int, addr text);
CREATE TABLE vip_contacts () INHERITS (contacts);
INSERT INTO contacts VALUES (1, 'plain@example.com');
INSERT INTO vip_contacts VALUES (2, 'boss@secret-domain.example');
GRANT SELECT ON accounts, accounts_eu, accounts_us, accounts_all, notes, vip_notes, contacts,
    vip_contacts TO PUBLIC;
CREATE TABLE scratch (v text);
GRANT SELECT, INSERT, UPDATE, DELETE ON customers, vip_customers, scratch TO PUBLIC;
GRANT SELECT ON customer_contacts, customer_names, item_contacts TO PUBLIC;
