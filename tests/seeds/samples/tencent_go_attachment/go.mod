module tencent_go_attachment

go 1.16
