// The dynamic-config index of Apicurio Registry 2.4.2 comes from a Quarkus extension whose
// build-time half is not on Maven Central (mailferry_testkit/schema_registry_assets/pom.xml); the registry runs
// with no dynamic (runtime-changeable) settings, which the tests do not use.
package io.mailferry.registry;

import io.apicurio.common.apps.config.DynamicConfigPropertyList;
import javax.enterprise.context.ApplicationScoped;
import javax.enterprise.inject.Produces;

@ApplicationScoped
public class DynamicConfigProducer {
    @Produces
    @ApplicationScoped
    public DynamicConfigPropertyList dynamicConfigProperties() {
        return new DynamicConfigPropertyList(java.util.List.of());
    }
}
