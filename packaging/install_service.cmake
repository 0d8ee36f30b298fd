# install_service.cmake - run at install time (cmake --install, and CPack
# when it builds the .deb), by the install(CODE) rule in package.cmake,
# which sets FERRY_PACKAGING_DIR, FERRY_CONF_EXAMPLE, FERRY_BINDIR and
# FERRY_UNIT_DIR (where the unit is made, in the build tree).
#
# Where the unit and the config go, and the paths inside the unit, follow
# the prefix installed to, which is only known now: CPack installs to /usr
# whatever prefix the build was configured with. Prefix /usr (the package):
# /lib/systemd/system/ferryd.service and /etc/ferry/ferryd.conf; any other
# prefix P: P/lib/systemd/system and P/etc/ferry (systemd reads units from
# /usr/local/lib/systemd/system too).
#
# An existing ferryd.conf is left as it is (it is the admin's); the .deb
# marks it as a conffile (packaging/conffiles), so dpkg asks on upgrades.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(sysconfdir /etc)
  set(unitdir /lib/systemd/system)
else()
  set(sysconfdir ${CMAKE_INSTALL_PREFIX}/etc)
  set(unitdir ${CMAKE_INSTALL_PREFIX}/lib/systemd/system)
endif()
if(IS_ABSOLUTE "${FERRY_BINDIR}")
  set(FERRYD_BIN ${FERRY_BINDIR}/ferryd)
else()
  set(FERRYD_BIN ${CMAKE_INSTALL_PREFIX}/${FERRY_BINDIR}/ferryd)
endif()
set(FERRYD_CONF ${sysconfdir}/ferry/ferryd.conf)
# One file per destination: installs to two places may run at once (CPack
# in a test while another test installs).
string(MD5 dest_id "$ENV{DESTDIR}${CMAKE_INSTALL_PREFIX}")
set(unit_made ${FERRY_UNIT_DIR}/${dest_id}/ferryd.service)
configure_file(${FERRY_PACKAGING_DIR}/ferryd.service.in ${unit_made} @ONLY)
file(INSTALL DESTINATION ${unitdir} TYPE FILE FILES ${unit_made})
if(EXISTS "$ENV{DESTDIR}${FERRYD_CONF}")
  message(STATUS "Keeping: $ENV{DESTDIR}${FERRYD_CONF}")
else()
  file(INSTALL DESTINATION ${sysconfdir}/ferry TYPE FILE RENAME ferryd.conf
    FILES ${FERRY_CONF_EXAMPLE})
endif()
