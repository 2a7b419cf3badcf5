// A small app on pgjdbc against one tenant's database over the tenant wire
// front: DDL, typed parameters in and out, a batch, a transaction rolled
// back and one committed, a second connection. Prints one JSON object.
//
//   java -cp /usr/share/java/postgresql.jar TenantApp.java <jdbc-url>

import java.math.BigDecimal;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.Statement;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;

public class TenantApp {
    public static void main(String[] args) throws Exception {
        String url = args[0];
        List<String> out = new ArrayList<>();
        try (Connection c = DriverManager.getConnection(url)) {
            try (Statement s = c.createStatement()) {
                s.execute("CREATE TABLE accounts (id bigint PRIMARY KEY, owner text NOT NULL, balance numeric(12,2), "
                    + "active boolean, opened timestamptz, ref uuid, doc jsonb, photo bytea)");
            }
            try (PreparedStatement insert = c.prepareStatement("INSERT INTO accounts VALUES (?, ?, ?, ?, ?, ?, ?::jsonb, ?)")) {
                insert.setLong(1, 1);
                insert.setString(2, "ada");
                insert.setBigDecimal(3, new BigDecimal("1200.50"));
                insert.setBoolean(4, true);
                insert.setObject(5, OffsetDateTime.of(2026, 12, 1, 10, 0, 0, 0, ZoneOffset.UTC));
                insert.setObject(6, UUID.fromString("00000000-0000-0000-0000-00000000002a"));
                insert.setString(7, "{\"tier\": \"gold\"}");
                insert.setBytes(8, new byte[] {1, (byte) 255});
                insert.executeUpdate();
                // A batch, as ORMs and bulk loaders send it.
                for (long id = 10; id < 14; id++) {
                    insert.setLong(1, id);
                    insert.setString(2, "batch" + id);
                    insert.setBigDecimal(3, BigDecimal.valueOf(id));
                    insert.setBoolean(4, false);
                    insert.setObject(5, null);
                    insert.setObject(6, null);
                    insert.setString(7, null);
                    insert.setBytes(8, null);
                    insert.addBatch();
                }
                out.add(q("batch") + ":" + insert.executeBatch().length);
            }
            // A transaction rolled back, then one committed.
            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) {
                s.executeUpdate("UPDATE accounts SET balance = 0 WHERE id = 1");
                c.rollback();
                s.executeUpdate("UPDATE accounts SET balance = balance + 99.50 WHERE id = 1");
                c.commit();
            }
            c.setAutoCommit(true);
            try (PreparedStatement select = c.prepareStatement(
                    "SELECT id, owner, balance, active, opened, ref, doc ->> 'tier', photo FROM accounts WHERE id = ?")) {
                select.setLong(1, 1);
                try (ResultSet rs = select.executeQuery()) {
                    rs.next();
                    out.add(q("row") + ":[" + rs.getLong(1) + "," + q(rs.getString(2)) + "," + q(rs.getBigDecimal(3).toPlainString()) + ","
                        + rs.getBoolean(4) + "," + q(rs.getObject(5, OffsetDateTime.class).withOffsetSameInstant(ZoneOffset.UTC).toString()) + ","
                        + q(rs.getObject(6).toString()) + "," + q(rs.getString(7)) + "," + rs.getBytes(8).length + "]");
                }
            }
            // A second connection to the same tenant sees the committed rows.
            try (Connection other = DriverManager.getConnection(url);
                 ResultSet rs = other.createStatement().executeQuery("SELECT count(*), sum(balance) FROM accounts")) {
                rs.next();
                out.add(q("count") + ":" + rs.getLong(1) + "," + q("sum") + ":" + q(rs.getBigDecimal(2).toPlainString()));
            }
        }
        System.out.println("{" + String.join(",", out) + "}");
    }

    static String q(String s) {
        return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }
}
