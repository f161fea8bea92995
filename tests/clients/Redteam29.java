import java.sql.*;
import java.util.*;

/* Red team 29: pgjdbc driver features through lakeproxy (run.sh's configuration). Masking under
 * every query mode (prepareThreshold=1/-1, binaryTransfer, binary text columns, simple,
 * extendedCacheEverything, autosave=always), two portals read in turn, getGeneratedKeys on a
 * masked table, row-level security under the same modes with setClientInfo and readOnly,
 * setQueryTimeout and Statement.cancel, batches with reWriteBatchedInserts, and the admin console.
 * Prints "ok - ..." or "not ok - ..." per check; exits 0 when all pass. args: host port */
public class Redteam29 {
    static String host, port;
    static final List<String> failures = new ArrayList<>();

    static void check(String name, boolean ok, Object detail) {
        System.out.println((ok ? "ok - " : "not ok - ") + name);
        if (!ok) {
            failures.add(name);
            if (detail != null)
                System.out.println("    " + detail);
        }
    }

    static Connection connect(String db, String user, String... props) throws SQLException {
        Properties p = new Properties();
        p.setProperty("user", user);
        p.setProperty("password", user + "-secret");
        p.setProperty("sslmode", "disable");
        for (String kv : props) {
            int i = kv.indexOf('=');
            p.setProperty(kv.substring(0, i), kv.substring(i + 1));
        }
        return DriverManager.getConnection("jdbc:postgresql://" + host + ":" + port + "/" + db, p);
    }

    static boolean leaks(String s) {
        return s.contains("secret") || s.contains("111-22") || s.contains("444-55") || s.contains("777-88");
    }

    /* Rows as "a b c|" with the given fetch size and parameters. */
    static String rows(Connection c, String sql, int fetch, Object... args) throws SQLException {
        StringBuilder sb = new StringBuilder();
        try (PreparedStatement ps = c.prepareStatement(sql)) {
            ps.setFetchSize(fetch);
            for (int i = 0; i < args.length; i++)
                ps.setObject(i + 1, args[i]);
            try (ResultSet rs = ps.executeQuery()) {
                int n = rs.getMetaData().getColumnCount();
                while (rs.next()) {
                    for (int i = 1; i <= n; i++)
                        sb.append(rs.getString(i)).append(i < n ? " " : "|");
                }
            }
        }
        return sb.toString();
    }

    static String one(Connection c, String sql) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) {
            rs.next();
            return rs.getString(1);
        }
    }

    static final String[][] MODES = {{"prepareThreshold=1"}, {"prepareThreshold=-1", "binaryTransfer=true"},
        {"prepareThreshold=-1", "binaryTransferEnable=25,1043"}, {"preferQueryMode=simple"},
        {"preferQueryMode=extendedCacheEverything"}, {"autosave=always"}};
    static final String MQ = "SELECT id, email, ssn FROM customers WHERE id <= ? ORDER BY id";
    static final String WANT3 = "1 a***@example.com ****3333|2 g***@navy.example ****6666|3 z***@example.com ****9999|";

    static void masking() {
        for (String[] m : MODES) {
            String mode = Arrays.toString(m);
            try (Connection c = connect("app_txn", "mallory", m)) {
                List<String> got = new ArrayList<>();
                for (int i = 0; i < 5; i++)
                    got.add(rows(c, MQ, 0, 3));
                c.setAutoCommit(false);
                got.add(rows(c, MQ, 1, 3));
                got.add(rows(c, "SELECT id, email, ssn FROM customers ORDER BY id", 2));
                c.commit();
                c.setAutoCommit(true);
                String types;
                try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT id, email, ssn FROM customers")) {
                    ResultSetMetaData md = rs.getMetaData();
                    types = md.getColumnTypeName(1) + " " + md.getColumnTypeName(2) + " " + md.getColumnTypeName(3)
                        + " " + md.getTableName(2);
                }
                check("masked " + mode + ": unnamed, named, portal of 1 and 2 rows: masked; metadata int4 text text customers",
                      got.stream().allMatch(WANT3::equals) && types.equals("int4 text text customers"), got + " " + types);
            } catch (SQLException e) {
                check("masked " + mode + " ran", false, e);
            }
        }
        try (Connection c = connect("app_txn", "mallory", "prepareThreshold=1")) {
            c.setAutoCommit(false);
            StringBuilder sb = new StringBuilder();
            try (PreparedStatement p1 = c.prepareStatement("SELECT id, email FROM customers WHERE id > ? ORDER BY id");
                 PreparedStatement p2 = c.prepareStatement("SELECT id, ssn FROM customers WHERE id > ? ORDER BY id DESC")) {
                p1.setFetchSize(1);
                p2.setFetchSize(1);
                p1.setInt(1, 0);
                p2.setInt(1, 0);
                ResultSet r1 = p1.executeQuery();
                ResultSet r2 = p2.executeQuery();
                for (int i = 0; i < 3; i++) {
                    r1.next();
                    r2.next();
                    sb.append(r1.getString(2)).append(' ').append(r2.getString(2)).append('|');
                }
            }
            c.commit();
            check("masked: two portals read a row at a time in turn: both masked",
                  sb.toString().equals("a***@example.com ****9999|g***@navy.example ****6666|z***@example.com ****3333|"), sb);
            String state = null, gk = null;
            try (Statement s = c.createStatement()) {
                s.executeUpdate("UPDATE customers SET name = name WHERE id = 1", Statement.RETURN_GENERATED_KEYS);
                try (ResultSet rs = s.getGeneratedKeys()) {
                    gk = rs.next() ? rs.getString("email") + " " + rs.getString("ssn") : "";
                }
            } catch (SQLException e) {
                state = e.getSQLState();
            }
            c.rollback();
            c.setAutoCommit(true);
            check("masked: getGeneratedKeys (RETURNING *) on the masked table is refused (42501) or masked",
                  "42501".equals(state) || (gk != null && !leaks(gk)), state + " " + gk);
            check("masked: usable after", rows(c, MQ, 0, 1).equals("1 a***@example.com ****3333|"), null);
        } catch (SQLException e) {
            check("masked: portals and generated keys ran", false, e);
        }
    }

    static void rowLevelSecurity() {
        String q = "SELECT count(*), min(tenant_id), max(tenant_id) FROM rls_docs WHERE id > ?";
        for (String[] m : MODES) {
            for (String t : new String[] {"3", "7"}) {
                String name = "RLS tenant" + t + " " + Arrays.toString(m);
                try (Connection c = connect("app_rls", "tenant" + t, m)) {
                    String want = "100 " + t + " " + t + "|";
                    boolean ok = true;
                    for (int i = 0; i < 5; i++)
                        ok &= rows(c, q, 0, 0).equals(want);
                    c.setAutoCommit(false);
                    String ids = rows(c, "SELECT tenant_id FROM rls_docs WHERE id < ? ORDER BY id", 2, 40);
                    c.commit();
                    c.setAutoCommit(true);
                    ok &= ids.equals((t + "|").repeat(4));
                    String state = null;
                    try (Statement s = c.createStatement()) {
                        s.execute("SET app.tenant_id = 1");
                    } catch (SQLException e) {
                        state = e.getSQLState();
                    }
                    c.setClientInfo("ApplicationName", "x'; SET app.tenant_id = '1");
                    String after = rows(c, "SELECT count(*), min(tenant_id), max(tenant_id), current_setting('application_name') FROM rls_docs", 0);
                    c.setAutoCommit(false);
                    c.setReadOnly(true);
                    String ro = one(c, "SHOW transaction_read_only");
                    c.commit();
                    c.setReadOnly(false);
                    c.setAutoCommit(true);
                    check(name + ": own rows only (statements, portal), SET refused, setClientInfo kept, readOnly",
                          ok && "42501".equals(state) && after.equals("100 " + t + " " + t + " x'; SET app.tenant_id = '1|")
                              && "on".equals(ro), ids + " " + state + " " + after + " " + ro);
                } catch (SQLException e) {
                    check(name + " ran", false, e);
                }
            }
        }
    }

    static void cancelAndTimeout() {
        for (String du : new String[] {"app_txn:mallory", "app_rls:tenant3", "app:alice"}) {
            for (String mode : new String[] {"prepareThreshold=1", "preferQueryMode=simple"}) {
                String[] x = du.split(":");
                String name = du + " " + mode;
                try (Connection c = connect(x[0], x[1], mode)) {
                    String s1 = null, s2 = null;
                    long t0 = System.nanoTime();
                    try (Statement s = c.createStatement()) {
                        s.setQueryTimeout(1);
                        s.execute("SELECT pg_sleep(5)");
                    } catch (SQLException e) {
                        s1 = e.getSQLState();
                    }
                    long ms = (System.nanoTime() - t0) / 1000000;
                    boolean after1 = "42".equals(one(c, "SELECT 42"));
                    c.setAutoCommit(false);
                    try (Statement s = c.createStatement()) {
                        Timer timer = new Timer(true);
                        timer.schedule(new TimerTask() {
                            public void run() {
                                try {
                                    s.cancel();
                                } catch (SQLException e) {
                                    // reported below: the statement then runs its 5 s
                                }
                            }
                        }, 300);
                        s.execute("SELECT pg_sleep(5)");
                    } catch (SQLException e) {
                        s2 = e.getSQLState();
                    }
                    c.rollback();
                    c.setAutoCommit(true);
                    boolean after2 = "43".equals(one(c, "SELECT 43"));
                    check(name + ": setQueryTimeout(1) and Statement.cancel() give 57014 and the connection is reusable",
                          "57014".equals(s1) && ms < 3000 && after1 && "57014".equals(s2) && after2,
                          s1 + " " + ms + "ms " + after1 + " " + s2 + " " + after2);
                } catch (SQLException e) {
                    check(name + " ran", false, e);
                }
            }
        }
    }

    static void batches() {
        for (String du : new String[] {"app_txn:mallory", "app_rls:tenant3", "app_txn:alice"}) {
            String[] x = du.split(":");
            try (Connection c = connect(x[0], x[1], "reWriteBatchedInserts=true")) {
                c.setAutoCommit(false);
                try (Statement s = c.createStatement()) {
                    s.execute("CREATE TEMP TABLE rt29_batch (a int, b text) ON COMMIT DROP");
                }
                int n;
                try (PreparedStatement ps = c.prepareStatement("INSERT INTO rt29_batch VALUES (?, ?)")) {
                    for (int i = 0; i < 3000; i++) {
                        ps.setInt(1, i);
                        ps.setString(2, "r" + i);
                        ps.addBatch();
                    }
                    n = ps.executeBatch().length;
                }
                String sum = one(c, "SELECT count(*) || ' ' || sum(a) FROM rt29_batch");
                c.commit();
                check(du + ": reWriteBatchedInserts batch of 3000 in a transaction: all rows", n == 3000 && "3000 4498500".equals(sum), n + " " + sum);
            } catch (SQLException e) {
                check(du + ": batch ran", false, e);
            }
        }
        try (Connection c = connect("app_rls", "tenant3", "prepareThreshold=1")) {
            c.setAutoCommit(false);
            int n = 0;
            try (PreparedStatement ps = c.prepareStatement("UPDATE rls_docs SET body = body WHERE id = ?")) {
                for (int i = 1; i <= 1000; i++) {
                    ps.setInt(1, i);
                    ps.addBatch();
                }
                for (int r : ps.executeBatch())
                    n += r;
            }
            c.rollback();
            check("RLS: a batch of 1000 UPDATEs by id touches only the tenant's 100 rows", n == 100, n);
        } catch (SQLException e) {
            check("RLS: batch update ran", false, e);
        }
    }

    /* FOUND, FIXED since (low): the admin console could not be used from pgjdbc. With
     * preferQueryMode=simple the login itself failed, on the "SET extra_float_digits = 3"
     * pgjdbc sends after connecting (42601 "unexpected text after ..."); the console answers SET
     * now, as PgBouncer's does. Like PgBouncer's, it takes simple queries only: in pgjdbc's
     * default (extended) mode a query gets 0A000 with a message that names the setting. */
    static void adminConsole() {
        for (String mode : new String[] {"simple", "extended"}) {
            String got;
            try (Connection c = connect("lakeproxy", "alice", "preferQueryMode=" + mode);
                 Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SHOW POOLS")) {
                int n = 0;
                while (rs.next())
                    n++;
                got = "rows " + n;
            } catch (SQLException e) {
                got = e.getSQLState() + " " + e.getMessage();
            }
            if (mode.equals("simple"))
                check("admin console through pgjdbc (preferQueryMode=simple): SHOW POOLS lists "
                      + "the three pools", "rows 3".equals(got), got);
            else
                check("admin console through pgjdbc (extended): refused with 0A000 naming "
                      + "preferQueryMode=simple", got.startsWith("0A000") &&
                      got.contains("preferQueryMode=simple"), got);
        }
    }

    public static void main(String[] args) {
        host = args[0];
        port = args[1];
        masking();
        rowLevelSecurity();
        cancelAndTimeout();
        batches();
        adminConsole();
        System.exit(failures.isEmpty() ? 0 : 1);
    }
}
