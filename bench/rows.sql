-- bench/run.sh's "rows" workload: a result of 1,000 rows (about 130 bytes each) per
-- transaction, as reports and analytics read, where relaying rows outweighs the round trip
SELECT aid, bid, abalance, filler FROM pgbench_accounts WHERE aid <= 1000;
