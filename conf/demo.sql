-- demo.sql: the demo schema `make demo` loads.
CREATE ROLE demo_owner LOGIN PASSWORD 'demo-owner-secret';
-- its password is a token that lakeproxy's `command` provider rotates (tests/lib/mint_token.sh)
CREATE ROLE demo_rotating LOGIN;
-- row-level security: lakeproxy assumes demo_tenant for clients of database demo_rls and
-- injects app.tenant_id from the user's attributes (conf/demo.yaml)
CREATE ROLE demo_tenant NOLOGIN;
GRANT demo_tenant TO demo_owner;
CREATE DATABASE demo OWNER demo_owner;
\c demo
SET ROLE demo_owner;
CREATE TABLE customers (
    id int PRIMARY KEY,
    tenant_id int NOT NULL,
    name text NOT NULL,
    email text NOT NULL,
    ssn text NOT NULL
);
INSERT INTO customers VALUES
    (1, 1, 'Ada Lovelace', 'ada@example.com', '123-45-6789'),
    (2, 1, 'Alan Turing', 'alan@example.com', '234-56-7890'),
    (3, 2, 'Grace Hopper', 'grace@example.org', '345-67-8901'),
    (4, 2, 'Edsger Dijkstra', 'edsger@example.org', '456-78-9012');
CREATE TABLE orders (
    id serial PRIMARY KEY,
    customer_id int REFERENCES customers,
    amount numeric(10, 2) NOT NULL
);
INSERT INTO orders (customer_id, amount)
    SELECT 1 + g % 4, (g * 7.5)::numeric(10, 2) FROM generate_series(1, 100) g;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO demo_rotating;
GRANT SELECT ON customers, orders TO demo_tenant;
-- after a transaction a custom setting reads '' rather than NULL: nullif makes '' match nothing
ALTER TABLE customers ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON customers TO demo_tenant
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::int);
