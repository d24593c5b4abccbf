// pgjdbc, Debian's libpostgresql-jdbc-java, drives transactions on the
// mirrored table channels through pgshift; after each scenario the rows on
// old (channels) and on new (channels_v2) are read over direct connections.
// Run by tests/integration/dual_write_test.cc:
//   java -cp postgresql.jar MirrorTransactions.java PROXY_PORT OLD_PORT NEW_PORT
// Exits 1 with the first broken expectation.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Savepoint;
import java.sql.Statement;

public class MirrorTransactions {
  static String proxyPort, oldPort, newPort;

  static Connection connect(String port, String options) throws SQLException {
    return DriverManager.getConnection(
        "jdbc:postgresql://127.0.0.1:" + port + "/mirror_db?user=postgres&sslmode=disable" + options);
  }

  // The ids in [from, to] on one side, as "a,b,c" ("" when none).
  static String ids(String port, String table, int from, int to) throws SQLException {
    try (Connection c = connect(port, "");
         PreparedStatement s = c.prepareStatement(
             "SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM " + table
                 + " WHERE id BETWEEN ? AND ?")) {
      s.setInt(1, from);
      s.setInt(2, to);
      try (ResultSet r = s.executeQuery()) {
        r.next();
        return r.getString(1);
      }
    }
  }

  // Both sides hold exactly `expected` among the ids in [from, to] (new
  // commits its prepared mirror just after the client's COMMIT answers:
  // read again for a few seconds).
  static void expect(String scenario, int from, int to, String expected) throws Exception {
    String old = "", fresh = "";
    for (int i = 0; i < 100; ++i) {
      old = ids(oldPort, "channels", from, to);
      fresh = ids(newPort, "channels_v2", from, to);
      if (old.equals(expected) && fresh.equals(expected)) return;
      Thread.sleep(50);
    }
    System.err.println(scenario + ": expected [" + expected + "] on both sides, old has ["
        + old + "], new has [" + fresh + "]");
    System.exit(1);
  }

  // The ids from..from+count-1, as ids() gives them.
  static String range(int from, int count) {
    StringBuilder out = new StringBuilder();
    for (int id = from; id < from + count; ++id) out.append(id == from ? "" : ",").append(id);
    return out.toString();
  }

  static void insert(Connection c, int id) throws SQLException {
    try (PreparedStatement s = c.prepareStatement("INSERT INTO channels (id, title) VALUES (?, ?)")) {
      s.setInt(1, id);
      s.setString(2, "jdbc " + id);
      s.executeUpdate();
    }
  }

  static void batch(Connection c, int from, int count) throws SQLException {
    try (PreparedStatement s = c.prepareStatement("INSERT INTO channels (id, title) VALUES (?, ?)")) {
      for (int id = from; id < from + count; ++id) {
        s.setInt(1, id);
        s.setString(2, "batch " + id);
        s.addBatch();
      }
      s.executeBatch();
    }
  }

  // executeBatch of 300 rows from `from`: rolled back (none on either side),
  // then committed (all on both).
  static void batchRolledBackThenCommitted(Connection c, String name, int from) throws Exception {
    batch(c, from, 300);
    c.rollback();
    expect(name + ", rollback", from, from + 299, "");
    batch(c, from, 300);
    c.commit();
    expect(name + ", commit", from, from + 299, range(from, 300));
  }

  public static void main(String[] args) throws Exception {
    proxyPort = args[0];
    oldPort = args[1];
    newPort = args[2];
    try (Connection c = connect(proxyPort, "")) {
      c.setAutoCommit(false);
      // Insert, update and delete, then rollback: nothing on either side.
      insert(c, 1000);
      try (Statement s = c.createStatement()) {
        s.executeUpdate("UPDATE channels SET title = 'changed' WHERE id = 1");
        s.executeUpdate("DELETE FROM channels WHERE id = 2");
      }
      c.rollback();
      expect("insert, update, delete, rollback", 1000, 1000, "");
      expect("insert, update, delete, rollback", 1, 2, "1,2");
      // Then commit: on both.
      insert(c, 1001);
      insert(c, 1002);
      c.commit();
      expect("insert, commit", 1001, 1002, "1001,1002");
      // A failed statement, then rollback.
      insert(c, 1003);
      try {
        insert(c, 1001);
        throw new AssertionError("a duplicate key was accepted");
      } catch (SQLException expected) {
        if (!"23505".equals(expected.getSQLState())) throw expected;
      }
      c.rollback();
      expect("failed statement, rollback", 1003, 1003, "");
      // Savepoints: rollback(savepoint) undoes what followed it.
      insert(c, 1004);
      Savepoint savepoint = c.setSavepoint();
      insert(c, 1005);
      c.rollback(savepoint);
      insert(c, 1006);
      c.commit();
      expect("savepoint", 1004, 1006, "1004,1006");
      // Past prepareThreshold (5) the INSERT is a named server statement.
      for (int id = 1010; id < 1020; ++id) insert(c, id);
      c.rollback();
      expect("prepared, rollback", 1010, 1019, "");
      for (int id = 1010; id < 1020; ++id) insert(c, id);
      c.commit();
      expect("prepared, commit", 1010, 1019, "1010,1011,1012,1013,1014,1015,1016,1017,1018,1019");
      batchRolledBackThenCommitted(c, "executeBatch", 2000);
    }
    // reWriteBatchedInserts: multi-row INSERTs.
    try (Connection c = connect(proxyPort, "&reWriteBatchedInserts=true")) {
      c.setAutoCommit(false);
      batchRolledBackThenCommitted(c, "rewritten batch", 3000);
    }
    // autoCommit on: each statement commits on both.
    try (Connection c = connect(proxyPort, "")) {
      insert(c, 4000);
      batch(c, 4001, 50);
      expect("autoCommit", 4000, 4050, range(4000, 51));
    }
    System.out.println("ok");
  }
}
