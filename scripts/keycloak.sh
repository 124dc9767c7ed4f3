# Keycloak for the tests (scripts/test) and the peer benchmark (bench/peers.sh): one version,
# fetched once. Sourced; the caller defines `log` and `apt_install`.
PROVIDERS_DIR=target/providers
KEYCLOAK_VERSION=26.7.3
KEYCLOAK_HOME=$PROVIDERS_DIR/keycloak-$KEYCLOAK_VERSION

# Keycloak 26 needs Java 21 or later: the newest JDK under /usr/lib/jvm that is, else one from apt.
java_home_21() {
  local java major
  for java in $(ls -d /usr/lib/jvm/*/bin/java 2>/dev/null | sort -V -r); do
    major=$("$java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = \([0-9]*\).*/\1/p')
    if [ -n "$major" ] && [ "$major" -ge 21 ]; then
      dirname "$(dirname "$java")"
      return 0
    fi
  done
  return 1
}

# The Keycloak distribution, fetched once through Maven (from Maven Central) and kept unpacked
# under target/, so later runs start it without downloading.
ensure_keycloak() {
  if [ -x "$KEYCLOAK_HOME/bin/kc.sh" ]; then return; fi
  command -v mvn >/dev/null || { log "installing Maven"; apt_install maven; }
  command -v unzip >/dev/null || { log "installing unzip"; apt_install unzip; }
  log "fetching Keycloak $KEYCLOAK_VERSION"
  mkdir -p "$PROVIDERS_DIR"
  mvn -B -q dependency:copy -Dartifact="org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:zip" \
    -DoutputDirectory="$PROVIDERS_DIR"
  unzip -q -o "$PROVIDERS_DIR/keycloak-quarkus-dist-$KEYCLOAK_VERSION.zip" -d "$PROVIDERS_DIR"
  rm -f "$PROVIDERS_DIR/keycloak-quarkus-dist-$KEYCLOAK_VERSION.zip"
}

