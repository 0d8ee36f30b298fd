# package.cmake - what `cmake --install` and the Debian packages hold beyond
# the programs and the library: the systemd unit and the example config;
# and the packages themselves (CPack DEB):
#
#   cmake --build build --target package
#
# writes, in build/:
#   ferry_<version>_amd64.deb         ferryd, ferry, the unit (disabled), the
#                                     config /etc/ferry/ferryd.conf (a
#                                     conffile), the man pages (component
#                                     ferry); its postinst adds the system
#                                     user ferry and /var/lib/ferry
#   libferry<soversion>_<version>_amd64.deb   libferry.so.<soversion>
#   libferry-dev_<version>_amd64.deb  ferry.h, libferry.so and .a, ferry.pc,
#                                     the CMake package (find_package(ferry))
# Dependencies on other packages come from dpkg-shlibdeps (Debian: dpkg-dev).
# Included by the top-level CMakeLists.txt after every install() rule.
#
# Components: every install() rule names one of ferry, libferry,
# libferry_dev; a rule without COMPONENT belongs to ferry
# (CMAKE_INSTALL_DEFAULT_COMPONENT_NAME, set in the top-level file).

# The unit and the config: their places follow the prefix installed to,
# known only at install time (install_service.cmake).
install(CODE "
  set(FERRY_PACKAGING_DIR \"${CMAKE_CURRENT_LIST_DIR}\")
  set(FERRY_CONF_EXAMPLE \"${PROJECT_SOURCE_DIR}/broker/ferryd.conf.example\")
  set(FERRY_BINDIR \"${CMAKE_INSTALL_BINDIR}\")
  set(FERRY_UNIT_DIR \"${PROJECT_BINARY_DIR}/packaging\")
  include(\"${CMAKE_CURRENT_LIST_DIR}/install_service.cmake\")
  " COMPONENT ferry)

get_target_property(FERRY_LIB_SOVERSION ferry_shared SOVERSION)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME ferry)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "ferry maintainers <ferry@example.invalid>")
# Each package's summary is the first line of its description below. CPack
# would put the project's DESCRIPTION above all three, unless the summary is
# CPack's own default, which it leaves out.
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_NAME} built using CMake")
# CPack installs with DESTDIR and prefix /usr, whatever prefix the build was
# configured with: the install-time paths above see /usr (and write nothing
# outside the staging directory).
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL ferry libferry libferry_dev)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# A shlibs file for the package with a shared library (libferry0), so that
# dpkg-shlibdeps finds it for programs linked against libferry.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_ENABLE_COMPONENT_DEPENDS ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Stripped, as Debian ships programs (the build tree keeps the symbols).
set(CPACK_STRIP_FILES ON)

set(CPACK_DEBIAN_FERRY_PACKAGE_NAME ferry)
set(CPACK_DEBIAN_FERRY_PACKAGE_SECTION net)
# postinst adds the user with adduser; the rest comes from dpkg-shlibdeps.
set(CPACK_DEBIAN_FERRY_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_FERRY_PACKAGE_CONTROL_EXTRA
  ${CMAKE_CURRENT_LIST_DIR}/conffiles ${CMAKE_CURRENT_LIST_DIR}/postinst
  ${CMAKE_CURRENT_LIST_DIR}/prerm ${CMAKE_CURRENT_LIST_DIR}/postrm)
set(CPACK_COMPONENT_FERRY_DESCRIPTION "persistent publish/subscribe message broker
ferryd is a publish/subscribe broker whose acknowledged messages survive a
crash (LMDB); clients speak length-framed protobuf over TCP or TLS. This
package holds ferryd with a systemd unit (not enabled), and the ferry
command-line tool (pub, sub, bench, stats, admin).")

set(CPACK_DEBIAN_LIBFERRY_PACKAGE_NAME libferry${FERRY_LIB_SOVERSION})
set(CPACK_DEBIAN_LIBFERRY_PACKAGE_SECTION libs)
set(CPACK_COMPONENT_LIBFERRY_DESCRIPTION "client library of the ferry broker
libferry connects C programs to ferryd: publish, subscribe, durable
consumers, TLS. This package holds the shared library.")

set(CPACK_DEBIAN_LIBFERRY_DEV_PACKAGE_NAME libferry-dev)
set(CPACK_DEBIAN_LIBFERRY_DEV_PACKAGE_SECTION libdevel)
# The static library, ferry.pc (Requires.private) and ferryConfig.cmake
# (pkg_check_modules, find_dependency(OpenSSL)) need these.
set(FERRY_DEV_DEPENDS "libprotobuf-c-dev, pkg-config")
if(FERRY_OPENSSL_FOUND)
  string(APPEND FERRY_DEV_DEPENDS ", libssl-dev")
endif()
set(CPACK_DEBIAN_LIBFERRY_DEV_PACKAGE_DEPENDS "${FERRY_DEV_DEPENDS}")
set(CPACK_COMPONENT_LIBFERRY_DEV_DESCRIPTION "client library of the ferry broker (development files)
libferry connects C programs to ferryd. This package holds ferry.h, the
static library, ferry.pc and the CMake package (find_package(ferry)).")

include(CPack)
cpack_add_component(ferry DISPLAY_NAME "ferryd and the ferry tool")
cpack_add_component(libferry DISPLAY_NAME "libferry")
cpack_add_component(libferry_dev DISPLAY_NAME "libferry development files" DEPENDS libferry)
