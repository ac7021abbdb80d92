mkdir -p "with space/sub dir" "ünïcödé" "$(printf 'd%.0s' $(seq 1 110))/$(printf 'e%.0s' $(seq 1 110))"
echo a > "with space/sub dir/file name.txt"
echo b > "ünïcödé/日本語.txt"
echo c > "$(printf 'd%.0s' $(seq 1 110))/$(printf 'e%.0s' $(seq 1 110))/$(printf 'f%.0s' $(seq 1 150))"
echo d > -leading-dash
echo e > 'quote"and\backslash'
