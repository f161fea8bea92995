/* JdbcScenarios.java: the PostgreSQL JDBC driver (pgjdbc, Debian's libpostgresql-jdbc-java)
 * through lakeproxy in transaction pooling. pgjdbc always speaks the extended protocol, turns a
 * statement into a named server-side one after prepareThreshold executions, sends batches as
 * many Parse/Bind/Execute before one Sync, fetches with a fetch size through a portal and
 * Execute row limits (as Spark's JDBC scans do), and reads catalogs through DatabaseMetaData.
 * Every scenario must see the same rows as a direct connection would, and a masked user must
 * see masked values whatever the driver does. Run with Java's single-file launcher:
 *   java -cp /usr/share/java/postgresql.jar JdbcScenarios.java HOST PORT
 * Prints "ok - ..." or "not ok - ..." per check; exits 0 when all pass. */
import java.sql.BatchUpdateException;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Properties;

public class JdbcScenarios {
    static String host, port;
    static final List<String> failures = Collections.synchronizedList(new ArrayList<>());

    static void check(String name, boolean ok) {
        System.out.println((ok ? "ok - " : "not ok - ") + name);
        if (!ok)
            failures.add(name);
    }

    /* A connection to database db as user, with extra driver properties as key=value pairs. */
    static Connection connect(String db, String user, String... props) throws SQLException {
        Properties p = new Properties();
        p.setProperty("user", user);
        p.setProperty("password", user + "-secret");
        p.setProperty("sslmode", "disable");
        for (String kv : props) {
            int eq = kv.indexOf('=');
            p.setProperty(kv.substring(0, eq), kv.substring(eq + 1));
        }
        return DriverManager.getConnection("jdbc:postgresql://" + host + ":" + port + "/" + db, p);
    }

    static String itemName(PreparedStatement ps, int id) throws SQLException {
        ps.setInt(1, id);
        try (ResultSet rs = ps.executeQuery()) {
            return rs.next() ? rs.getString(1) : null;
        }
    }

    static int backendPid(Connection c) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT pg_backend_pid()")) {
            rs.next();
            return rs.getInt(1);
        }
    }

    /* Named server-side statements (prepareThreshold=1 names them from the first execution)
     * keep working while the client's transactions land on different server connections. */
    static void preparedAcrossServers() throws SQLException {
        try (Connection c = connect("app_txn", "alice", "prepareThreshold=1");
             PreparedStatement ps = c.prepareStatement("SELECT name FROM items WHERE id = ?")) {
            boolean all = true;
            for (int i = 1; i <= 50; i++)
                all &= ("item " + i).equals(itemName(ps, i));
            check("named prepared statement executed 50 times over pooled servers", all);
        }
    }

    /* An error carries its SQLSTATE; the connection works after it, in and out of a
     * transaction (a failed transaction rolled back). */
    static void errors() throws SQLException {
        try (Connection c = connect("app_txn", "alice"); Statement s = c.createStatement()) {
            String state = null;
            try {
                s.executeQuery("SELECT 1/0");
            } catch (SQLException e) {
                state = e.getSQLState();
            }
            check("division by zero raises SQLSTATE 22012", "22012".equals(state));
            c.setAutoCommit(false);
            state = null;
            try {
                s.executeQuery("SELECT * FROM no_such_table");
            } catch (SQLException e) {
                state = e.getSQLState();
            }
            c.rollback();
            check("an error inside a transaction raises 42P01", "42P01".equals(state));
            try (ResultSet rs = s.executeQuery("SELECT count(*) FROM items")) {
                check("usable after a rolled-back failed transaction", rs.next() && rs.getInt(1) == 1000);
            }
            c.commit();
        }
    }

    /* A batch of inserts (many Parse/Bind/Execute, one Sync) into a temporary table inside a
     * transaction: every row arrives and the transaction stays on one server connection. */
    static void batchInTransaction() throws SQLException {
        try (Connection c = connect("app_txn", "alice")) {
            c.setAutoCommit(false);
            int pid1 = backendPid(c);
            try (Statement s = c.createStatement()) {
                s.execute("CREATE TEMP TABLE jdbc_batch (a int, b text) ON COMMIT DROP");
            }
            int[] counts;
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO jdbc_batch VALUES (?, ?)")) {
                for (int i = 0; i < 200; i++) {
                    ps.setInt(1, i);
                    ps.setString(2, "row " + i);
                    ps.addBatch();
                }
                counts = ps.executeBatch();
            }
            long sum = 0;
            int n = 0;
            try (Statement s = c.createStatement();
                 ResultSet rs = s.executeQuery("SELECT count(*), sum(a) FROM jdbc_batch")) {
                rs.next();
                n = rs.getInt(1);
                sum = rs.getLong(2);
            }
            int pid2 = backendPid(c);
            c.commit();
            check("executeBatch of 200 inserts in a transaction: all rows, one server",
                  counts.length == 200 && n == 200 && sum == 199L * 200 / 2 && pid1 == pid2);
        }
    }

    /* A batch whose middle insert fails: the driver reports it and nothing of the batch stays. */
    static void failingBatch() throws SQLException {
        try (Connection c = connect("app_txn", "alice")) {
            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) {
                s.execute("CREATE TEMP TABLE jdbc_fail (a int PRIMARY KEY)");
            }
            boolean raised = false;
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO jdbc_fail VALUES (?)")) {
                for (int i : new int[] {1, 2, 2, 3}) {
                    ps.setInt(1, i);
                    ps.addBatch();
                }
                ps.executeBatch();
            } catch (BatchUpdateException e) {
                raised = "23505".equals(e.getSQLState()) ||
                         (e.getNextException() != null && "23505".equals(e.getNextException().getSQLState()));
            }
            c.rollback();
            check("a batch with a duplicate key raises 23505", raised);
            try (Statement s = c.createStatement();
                 ResultSet rs = s.executeQuery("SELECT to_regclass('pg_temp.jdbc_fail') IS NULL")) {
                check("rolled back: the batch's table is gone", rs.next() && rs.getBoolean(1));
            }
            c.commit();
        }
    }

    /* A fetch size makes the driver read through a portal, fetchSize rows per Execute
     * (PortalSuspended between): every row arrives once, in order. */
    static void fetchSizeCursor() throws SQLException {
        try (Connection c = connect("app_txn", "alice")) {
            c.setAutoCommit(false);
            try (PreparedStatement ps = c.prepareStatement("SELECT id, name FROM items WHERE id > ? ORDER BY id")) {
                ps.setFetchSize(37);
                ps.setInt(1, 0);
                int expect = 1;
                boolean inOrder = true;
                try (ResultSet rs = ps.executeQuery()) {
                    while (rs.next()) {
                        inOrder &= rs.getInt(1) == expect && ("item " + expect).equals(rs.getString(2));
                        expect++;
                    }
                }
                check("setFetchSize(37): all 1000 rows once and in order", inOrder && expect == 1001);
            }
            c.commit();
        }
    }

    interface ThreadBody {
        void run(int n) throws Exception;
    }

    /* Runs body(0..n-1) on n threads at once; the errors they raised, as text. */
    static List<String> inThreads(int n, ThreadBody body) throws InterruptedException {
        List<String> errors = Collections.synchronizedList(new ArrayList<>());
        List<Thread> threads = new ArrayList<>();
        for (int t = 0; t < n; t++) {
            final int i = t;
            Thread th = new Thread(() -> {
                try {
                    body.run(i);
                } catch (Exception e) {
                    errors.add(e.toString());
                }
            });
            threads.add(th);
            th.start();
        }
        for (Thread th : threads)
            th.join();
        return errors;
    }

    /* 24 threads over the pool's 4 server connections, each mixing autocommit queries, named
     * statements (the default prepareThreshold of 5) and explicit transactions. */
    static void manyThreads() throws InterruptedException {
        List<String> errors = inThreads(24, n -> {
            try (Connection c = connect("app_txn", "alice");
                 PreparedStatement add = c.prepareStatement("SELECT ?::int + ?::int");
                 PreparedStatement item = c.prepareStatement("SELECT name FROM items WHERE id = ?")) {
                for (int i = 0; i < 40; i++) {
                    add.setInt(1, n);
                    add.setInt(2, i);
                    try (ResultSet rs = add.executeQuery()) {
                        if (!rs.next() || rs.getInt(1) != n + i)
                            throw new IllegalStateException("wrong sum");
                    }
                    c.setAutoCommit(false);
                    String got = itemName(item, n * 40 + i + 1);
                    c.commit();
                    c.setAutoCommit(true);
                    if (!("item " + (n * 40 + i + 1)).equals(got))
                        throw new IllegalStateException("wrong item: " + got);
                }
            }
        });
        check("24 threads over 4 server connections: no error, every answer right", errors.isEmpty());
        if (!errors.isEmpty())
            System.out.println("    " + errors.get(0));
    }

    /* ApplicationName, a startup parameter, is what the server reports, whichever pooled
     * server connection serves the query. */
    static void applicationName() throws SQLException {
        try (Connection c = connect("app_txn", "alice", "ApplicationName=jdbc-scenarios");
             Statement s = c.createStatement()) {
            boolean all = true;
            for (int i = 0; i < 10; i++)
                try (ResultSet rs = s.executeQuery("SELECT current_setting('application_name')")) {
                    all &= rs.next() && "jdbc-scenarios".equals(rs.getString(1));
                }
            check("ApplicationName is the server's application_name on every query", all);
        }
    }

    /* DatabaseMetaData reads the catalogs with the driver's own queries. */
    static void metadata() throws SQLException {
        try (Connection c = connect("app_txn", "alice");
             ResultSet rs = c.getMetaData().getColumns(null, "public", "items", null)) {
            List<String> cols = new ArrayList<>();
            while (rs.next())
                cols.add(rs.getString("COLUMN_NAME"));
            check("DatabaseMetaData.getColumns(items) lists id and name", cols.equals(List.of("id", "name")));
        }
    }

    /* The same connection over TLS. */
    static void tls() throws SQLException {
        try (Connection c = connect("app_txn", "alice", "sslmode=require",
                                    "sslfactory=org.postgresql.ssl.NonValidatingFactory");
             PreparedStatement ps = c.prepareStatement("SELECT name FROM items WHERE id = ?")) {
            boolean all = true;
            for (int i = 1; i <= 10; i++)
                all &= ("item " + i).equals(itemName(ps, i));
            check("over TLS (sslmode=require): prepared statements", all);
        }
    }

    /* Rows of one scan read through a portal fetchSize rows at a time (autocommit off, as
     * Spark's JDBC reader runs it), or -1 when a row is wrong. */
    static int scan(Connection c, String sql, int fetchSize) throws SQLException {
        int n = 0;
        try (PreparedStatement ps = c.prepareStatement(sql)) {
            ps.setFetchSize(fetchSize);
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    if (!("item " + rs.getInt(1)).equals(rs.getString(2)))
                        return -1;
                    n++;
                }
            }
        }
        c.commit();
        return n;
    }

    /* Lakehouse Federation's reads as Spark's JDBC reader sends them, under an application_name
     * of their own: three filtered scans (constants in the text) and two unfiltered ones, each
     * fetched 100 rows per Execute. run.sh then checks that SHOW QUERIES and SHOW PUSHDOWN
     * count each scan once, not once per fetch. */
    static void federationScans() throws SQLException {
        try (Connection c = connect("app_txn", "alice", "ApplicationName=jdbc-federation")) {
            c.setAutoCommit(false);
            boolean all = true;
            for (int i = 0; i < 3; i++)
                all &= scan(c, "SELECT \"id\",\"name\" FROM items WHERE (\"id\" IS NOT NULL) AND (\"id\" > " +
                            (400 + i) + ")", 100) == 600 - i;
            for (int i = 0; i < 2; i++)
                all &= scan(c, "SELECT \"id\",\"name\" FROM items", 100) == 1000;
            check("Spark-like JDBC scans fetched 100 rows at a time: every row", all);
        }
    }

    /* "count min max" of the tenant ids of the rls_docs rows c sees with id > from. */
    static String tenantRows(PreparedStatement ps, int from) throws SQLException {
        ps.setInt(1, from);
        try (ResultSet rs = ps.executeQuery()) {
            rs.next();
            return rs.getInt(1) + " " + rs.getInt(2) + " " + rs.getInt(3);
        }
    }

    /* The SQLSTATE sql raises on c (null when it runs). */
    static String stateOf(Connection c, String sql, String... params) {
        try (PreparedStatement ps = c.prepareStatement(sql)) {
            for (int i = 0; i < params.length; i++)
                ps.setString(i + 1, params[i]);
            ps.execute();
            return null;
        } catch (SQLException e) {
            return e.getSQLState();
        }
    }

    /* Row-level security (database app_rls): two tenants' threads share the pool's 4 server
     * connections through named statements and transactions, and each sees only its rows;
     * setting the attribute itself, by SET, set_config with Bind parameters or RESET ALL, is
     * refused with 42501 and changes nothing. */
    static void rowLevelSecurity() throws InterruptedException {
        String rlsQuery = "SELECT count(*), min(tenant_id), max(tenant_id) FROM rls_docs WHERE id > ?";
        List<String> errors = inThreads(16, t -> {
            int tenant = t % 2 == 0 ? 3 : 7;
            String want = "100 " + tenant + " " + tenant;
            try (Connection c = connect("app_rls", "tenant" + tenant, "prepareThreshold=1");
                 PreparedStatement ps = c.prepareStatement(rlsQuery)) {
                for (int i = 0; i < 25; i++) {
                    c.setAutoCommit(i % 2 == 0);
                    String got = tenantRows(ps, 0);
                    if (!c.getAutoCommit())
                        c.commit();
                    if (!want.equals(got))
                        throw new IllegalStateException("tenant " + tenant + " saw " + got);
                }
            }
        });
        check("RLS: 16 threads of two tenants over 4 servers each see only their own rows", errors.isEmpty());
        if (!errors.isEmpty())
            System.out.println("    " + errors.get(0));
        try (Connection c = connect("app_rls", "tenant3");
             PreparedStatement ps = c.prepareStatement(rlsQuery)) {
            check("RLS: SET app.tenant_id is refused with 42501",
                  "42501".equals(stateOf(c, "SET app.tenant_id = 7")));
            check("RLS: set_config(?, ?, false) with Bind parameters is refused with 42501",
                  "42501".equals(stateOf(c, "SELECT set_config(?, ?, false)", "app.tenant_id", "7")));
            check("RLS: RESET ALL is refused with 42501", "42501".equals(stateOf(c, "RESET ALL")));
            check("RLS: after the refusals the client still sees only its rows",
                  "100 3 3".equals(tenantRows(ps, 0)));
            c.setTransactionIsolation(Connection.TRANSACTION_SERIALIZABLE);
            c.setAutoCommit(false);
            String iso;
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SHOW transaction_isolation")) {
                rs.next();
                iso = rs.getString(1);
            }
            c.commit();
            check("RLS: setTransactionIsolation(SERIALIZABLE) holds in the next transaction",
                  "serializable".equals(iso));
        } catch (SQLException e) {
            check("RLS: forgery attempts ran (" + e + ")", false);
        }
    }

    static final String MASKED_QUERY = "SELECT id, email, ssn FROM customers WHERE id <= ? ORDER BY id";

    /* Rows of MASKED_QUERY for ids <= 2 as "id email ssn" lines. */
    static List<String> maskedRows(Connection c, int fetchSize) throws SQLException {
        List<String> rows = new ArrayList<>();
        try (PreparedStatement ps = c.prepareStatement(MASKED_QUERY)) {
            ps.setFetchSize(fetchSize);
            ps.setInt(1, 2);
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next())
                    rows.add(rs.getInt(1) + " " + rs.getString(2) + " " + rs.getString(3));
            }
        }
        return rows;
    }

    /* A masked user sees masked values whether the driver uses unnamed or named statements,
     * binary transfer or a portal read a row at a time; an expression over a masked column is
     * refused (42501) and the connection stays usable; the exempt user sees the real values. */
    static void masking() throws SQLException {
        List<String> want = List.of("1 a***@example.com ****3333", "2 g***@navy.example ****6666");
        try (Connection c = connect("app_txn", "mallory")) {
            check("masked: unnamed statement", maskedRows(c, 0).equals(want));
            for (int i = 0; i < 5; i++)
                maskedRows(c, 0);
            check("masked: named statement after prepareThreshold", maskedRows(c, 0).equals(want));
            c.setAutoCommit(false);
            check("masked: portal read one row per Execute", maskedRows(c, 1).equals(want));
            c.commit();
            c.setAutoCommit(true);
            String state = null;
            try (Statement s = c.createStatement()) {
                s.executeQuery("SELECT lower(email) FROM customers");
            } catch (SQLException e) {
                state = e.getSQLState();
            }
            check("an expression over a masked column is refused with 42501", "42501".equals(state));
            try (Statement s = c.createStatement();
                 ResultSet rs = s.executeQuery("SELECT name FROM customers WHERE id = 1")) {
                check("usable after the refusal", rs.next() && "Ada Lovelace".equals(rs.getString(1)));
            }
        }
        try (Connection c = connect("app_txn", "mallory", "prepareThreshold=-1", "binaryTransfer=true")) {
            check("masked: forced server-side prepare with binary transfer", maskedRows(c, 0).equals(want));
        }
        try (Connection c = connect("app_txn", "alice")) {
            check("the exempt user sees the real values",
                  maskedRows(c, 0).get(0).equals("1 ada.secret@example.com 111-22-3333"));
        }
    }

    public static void main(String[] args) throws Exception {
        host = args[0];
        port = args[1];
        preparedAcrossServers();
        errors();
        batchInTransaction();
        failingBatch();
        fetchSizeCursor();
        manyThreads();
        applicationName();
        metadata();
        tls();
        federationScans();
        rowLevelSecurity();
        masking();
        System.exit(failures.isEmpty() ? 0 : 1);
    }
}
