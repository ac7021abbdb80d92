echo linked > hl1 && ln hl1 hl2 && ln hl1 sub/hl3
echo suid > suid && chmod 4755 suid
echo sgid > sgid && chmod 2711 sgid
mkdir sticky && chmod 1777 sticky
echo ro > ro && chmod 400 ro
mkdir closed && echo c > closed/c && chmod 700 closed
chmod 750 sub
echo owned > owned && chown 1234:5678 owned
echo ww > ww && chmod 666 ww && echo wx > wx && chmod 777 wx && mkdir wdir && chmod 777 wdir && echo u > wdir/u && chmod 604 wdir/u
