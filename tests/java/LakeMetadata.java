// What a JDBC tool (DBeaver, Metabase, any app on pgjdbc) asks of the
// lake's wire front: the server, the schemas, a schema's tables, a table's
// columns, then a query with a parameter. Prints one JSON object.
//
//   java -cp /usr/share/java/postgresql.jar LakeMetadata.java <jdbc-url> <schema> <table>

import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.util.ArrayList;
import java.util.List;

public class LakeMetadata {
    public static void main(String[] args) throws Exception {
        String url = args[0], schema = args[1], table = args[2];
        try (Connection connection = DriverManager.getConnection(url)) {
            DatabaseMetaData meta = connection.getMetaData();
            List<String> out = new ArrayList<>();
            out.add(field("product", quote(meta.getDatabaseProductName() + " " + meta.getDatabaseProductVersion())));

            List<String> schemas = new ArrayList<>();
            try (ResultSet rs = meta.getSchemas()) {
                while (rs.next()) schemas.add(quote(rs.getString("TABLE_SCHEM")));
            }
            out.add(field("schemas", "[" + String.join(",", schemas) + "]"));

            List<String> tables = new ArrayList<>();
            try (ResultSet rs = meta.getTables(null, schema, "%", new String[] {"TABLE"})) {
                while (rs.next()) tables.add(quote(rs.getString("TABLE_SCHEM") + "." + rs.getString("TABLE_NAME") + ":" + rs.getString("TABLE_TYPE")));
            }
            out.add(field("tables", "[" + String.join(",", tables) + "]"));

            List<String> columns = new ArrayList<>();
            try (ResultSet rs = meta.getColumns(null, schema, table, "%")) {
                while (rs.next()) {
                    columns.add(quote(rs.getInt("ORDINAL_POSITION") + " " + rs.getString("COLUMN_NAME") + " "
                        + rs.getString("TYPE_NAME") + " " + rs.getInt("DATA_TYPE") + " " + rs.getString("IS_NULLABLE")));
                }
            }
            out.add(field("columns", "[" + String.join(",", columns) + "]"));

            List<String> rows = new ArrayList<>();
            String sql = "SELECT id, name FROM " + schema + "." + table + " WHERE id >= ? ORDER BY id";
            try (PreparedStatement statement = connection.prepareStatement(sql)) {
                statement.setLong(1, 2);
                try (ResultSet rs = statement.executeQuery()) {
                    while (rs.next()) rows.add(quote(rs.getLong(1) + " " + rs.getString(2)));
                }
            }
            out.add(field("rows", "[" + String.join(",", rows) + "]"));
            System.out.println("{" + String.join(",", out) + "}");
        }
    }

    static String field(String name, String json) {
        return quote(name) + ":" + json;
    }

    static String quote(String s) {
        return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }
}
